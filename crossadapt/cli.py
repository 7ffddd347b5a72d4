"""The ``crossadapt`` command: parse arguments and a typed config, check them, then call the library.

Every command that takes a config loads it and runs ``crossadapt.experiment.preflight`` (names,
periods against the data, paths, files) before Ray starts; ``crossadapt validate`` does only that.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from crossadapt import atomic, log
from crossadapt.config import ExperimentConfig, load_config, to_dict
from crossadapt.errors import ConfigError, CrossAdaptError
from crossadapt.paths import SUBMIT_DIR_ENV

if TYPE_CHECKING:
    from crossadapt.experiment.preflight import Request

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
#: What an interrupted command leaves, and how to go on (shown on Ctrl-C).
RESUME = {
    "transfer": "rerun the same command to resume: Ray Train jobs continue from their last checkpoint in out_dir",
    "demo": "rerun the same command to resume: Ray Train jobs continue from their last checkpoint in out_dir, "
            "online streams from their last committed period",
    "online": "rerun the same command to resume: each stream continues from its last committed period",
    "train": "rerun the same command to resume from the teacher's last checkpoint in out_dir",
    "zoo": "rerun the same command to resume from the last checkpoint in out_dir",
    "tune": "rerun the same command to resume the search from out_dir/tune/<space>",
    "prepare": "nothing was half-written (outputs are written atomically); rerun the same command",
}
_say = log.sayer("crossadapt.cli")


def _overrides(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise CrossAdaptError(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)  # typed by YAML, then validated by the dataclasses
        except yaml.YAMLError as e:
            why = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"--set {p}: the value is not valid YAML ({why})") from None
    return out


def _default_config(args: argparse.Namespace) -> str | None:
    """The preset a command uses without ``--config``: ``--quick``'s, the demo's, or the defaults."""
    if getattr(args, "quick", False):
        return "quick.yaml"
    return "demo.yaml" if args.command == "demo" else None


def _config(args: argparse.Namespace) -> ExperimentConfig:
    """The typed config of ``--config`` (or the command's preset), ``--set`` and ``--out``."""
    default = _default_config(args)
    path = args.config or (str(CONFIG_DIR / default) if default else None)
    overrides = _overrides(args.set or [])
    if getattr(args, "out", None):
        overrides["out_dir"] = args.out
    return load_config(path, overrides)


def _request(args: argparse.Namespace) -> Request:
    """What the command will do with its config, for the preflight checks."""
    from crossadapt.experiment.preflight import Request

    return Request(command=args.command, models=tuple(getattr(args, "models", None) or ()),
                   space=getattr(args, "space", None), teacher=getattr(args, "teacher", None),
                   student=getattr(args, "student", None), num_periods=getattr(args, "num_periods", None),
                   force=bool(getattr(args, "force", False)))


def _checked(args: argparse.Namespace, paths: bool = True) -> ExperimentConfig:
    """The command's config, loaded and preflight-checked: first in every command, so a bad config,
    name, period or path is named in seconds, before Ray starts or anything trains."""
    from crossadapt.experiment.preflight import preflight

    cfg = _config(args)
    preflight(cfg, _request(args), paths=paths)
    return cfg


def _periods(text: str) -> range:
    """``--periods START:END`` (half-open) or ``K`` as a range; ConfigError naming the flag otherwise."""
    start, colon, end = text.partition(":")
    try:
        a = int(start)
        b = int(end) if colon else a + 1
    except ValueError:
        raise ConfigError(f"--periods: expected START:END (half-open) or one period K, got {text!r}") from None
    if not 0 <= a < b:
        raise ConfigError(f"--periods: need 0 <= START < END, got {text!r}")
    return range(a, b)


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a config (or a whole command line after ``--``) as the command would, print the resolved
    config as YAML, and start nothing."""
    line = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    if line:
        if args.config or args.set or args.out or args.quick:
            raise ConfigError("validate: give --config/--set/--out/--quick or a command line after --, not both")
        try:
            inner = build_parser().parse_args(line)
        except SystemExit as e:  # --help (0) or argparse's own error (2): not an interrupted run
            return int(e.code or 0)
        if not hasattr(inner, "set"):
            raise ConfigError(f"validate: `{inner.command}` takes no config; nothing to check")
    else:
        inner = argparse.Namespace(**{**vars(args), "command": "transfer"})  # the checks every command makes
    with contextlib.redirect_stdout(sys.stderr):  # warnings (a tiny test split): stdout is the YAML alone
        cfg = _checked(inner, paths=not args.no_paths)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0


def _holding(cfg: ExperimentConfig):
    """``cfg.out_dir``'s lock, held by the command: taken before the heavy imports (torch, Ray), so a second
    run on the folder is refused in seconds (``crossadapt.experiment.lock``; the library takes it too)."""
    from crossadapt.experiment.lock import hold

    return hold(cfg.out_dir)


def cmd_prepare(args: argparse.Namespace) -> int:
    cfg = _checked(args)
    from crossadapt.experiment.prepare import check_data_periods, prepare_data

    fm = prepare_data(cfg, force=args.force, num_periods=args.num_periods, min_count=args.min_count, check=False)
    print(f"{cfg.data.root}: {fm.dataset}, {len(fm.fields)} fields, vocab sizes {fm.vocab_sizes}")
    try:  # the data is written either way; say now what a run on it would refuse
        check_data_periods(cfg, fm)
    except ConfigError as e:
        print(f"crossadapt: warning: {e}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _checked(args)  # an imported teacher is refused there (preflight)
    with _holding(cfg):
        from crossadapt import storage
        from crossadapt.experiment.offline import evaluate_checkpoint, test_arrays, train_teacher
        from crossadapt.experiment.prepare import prepare_data
        from crossadapt.ray_init import init_ray

        init_ray()
        fm = prepare_data(cfg)
        outcome = train_teacher(cfg, fm, Path(cfg.out_dir), fresh=getattr(args, "fresh", False))
        metrics = evaluate_checkpoint(outcome.best_checkpoint, fm, test_arrays(cfg, fm))
        print(atomic.json_text({"checkpoint": outcome.best_checkpoint, "test": metrics,
                                "train_seconds": outcome.train_seconds}))
        storage.upload(cfg.out_dir, cfg.storage)  # the teacher checkpoint outlives the machine (no-op when unset)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from crossadapt.data.arrays import read_periods
    from crossadapt.featuremap import FeatureMap
    from crossadapt.models import load_checkpoint
    from crossadapt.train.engine import evaluate

    periods = _periods(args.periods)
    fm = FeatureMap.load(args.data)
    model = load_checkpoint(args.checkpoint, expected_feature_map=fm).model
    metrics = evaluate(model, read_periods(args.data, periods, fm))
    print(atomic.json_text({"checkpoint": args.checkpoint, "periods": list(periods), **metrics}))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    cfg = _checked(args)
    with _holding(cfg):
        from crossadapt.experiment.run import run_experiment

        run_experiment(cfg, stages=("offline",), fresh=getattr(args, "fresh", False))
    return 0


def cmd_online(args: argparse.Namespace) -> int:
    cfg = _checked(args)
    with _holding(cfg):
        from crossadapt.experiment.run import run_online_stage

        run_online_stage(cfg, teacher_ckpt=args.teacher, student_ckpt=args.student)
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    cfg = _checked(args)
    with _holding(cfg):
        from crossadapt.experiment.prepare import prepare_data
        from crossadapt.experiment.zoo import run_zoo, zoo_table
        from crossadapt.ray_init import init_ray

        init_ray()
        fm = prepare_data(cfg)
        result = run_zoo(cfg, fm, args.models, args.seeds, fresh=getattr(args, "fresh", False))
    print(zoo_table(result), end="")
    _say(f"wrote {Path(cfg.out_dir) / 'zoo.json'} and zoo.md")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    cfg = _checked(args)  # the space file too
    from crossadapt.tune.space import load_space

    space = load_space(args.space)
    with _holding(cfg):
        from crossadapt.experiment.prepare import prepare_data
        from crossadapt.ray_init import init_ray
        from crossadapt.tune.search import run_tune

        init_ray()
        fm = prepare_data(cfg)
        rows = run_tune(cfg, fm, space, fresh=getattr(args, "fresh", False))
    best = rows[0] if rows else None
    _say(f"tune {space.name}: {len(rows)} trials; best {space.metric} "
         f"{best[space.metric]:.4f} with {{{', '.join(f'{k}: {best[k]}' for k in space.keys)}}}" if best
         else f"tune {space.name}: no trials")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from crossadapt.experiment.compare import compare_table

    print(compare_table(args.run_dirs))
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from crossadapt.experiment.compare import load_results
    from crossadapt.experiment.tables import tables_markdown

    results = load_results(args.run_dir)
    if not args.readme:
        print(tables_markdown(results))
        return 0
    from crossadapt.experiment import readme_tables

    readme = Path(args.readme)
    copy = readme.parent / "results" / f"{args.name}.json"
    text = readme_tables.splice(readme.read_text(), args.name,
                                readme_tables.render(results, copy.relative_to(readme.parent).as_posix()))
    atomic.write_json(copy, results)
    atomic.write_text(readme, text)
    _say(f"{readme}: block '{args.name}' printed from {args.run_dir}/results.json (copy: {copy})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    cfg = _checked(args)
    with _holding(cfg):
        from crossadapt.experiment.run import run_experiment

        run_experiment(cfg, stages=("offline", "online"), fresh=getattr(args, "fresh", False))
    return 0


PATHS_HELP = (
    "Paths: relative paths written in a config file are relative to that file's folder; --set and --out "
    "values are relative to the current folder. Under `ray job submit --working-dir` the current folder is "
    "Ray's temporary copy of the working dir: give out_dir and data.root as absolute paths every node sees, "
    f"or set {SUBMIT_DIR_ENV}=<the folder you submitted> in the job's env_vars to resolve relative paths there."
)


def cmd_export(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, _overrides(args.set or []))  # --out is the export folder, not out_dir
    from crossadapt.experiment.bring_your_own import checkpoint_to_export
    from crossadapt.models.export import export_student

    checkpoint = args.checkpoint or checkpoint_to_export(cfg, args.method, args.seed)
    data = args.data or (cfg.data.root if Path(cfg.data.root).is_dir() else None)
    manifest = export_student(checkpoint, args.out, data_root=data, overwrite=args.force)
    _say(f"exported {checkpoint} -> {args.out} ({manifest['program']}, feature_map.json"
         f"{', vocab.json' if manifest['vocabularies'] else ', no vocabularies (ids encoded outside crossadapt)'}; "
         f"max |logit difference| {manifest['max_abs_logit_diff']:.1e})")
    return 0


def _verbosity() -> argparse.ArgumentParser:
    """``--quiet``/``--verbose``, accepted before the command and after it."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_const", dest="level", const=log.QUIET, default=argparse.SUPPRESS,
                   help="print results, warnings and errors only")
    g.add_argument("-v", "--verbose", action="store_const", dest="level", const=log.VERBOSE,
                   default=argparse.SUPPRESS, help="also every epoch, period and Ray's own INFO lines")
    return p


def build_parser() -> argparse.ArgumentParser:
    verbosity = _verbosity()
    p = argparse.ArgumentParser(prog="crossadapt", description=__doc__, parents=[verbosity], epilog=PATHS_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, **k: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[verbosity], **k)

    def common(sp: argparse.ArgumentParser, out: bool = True, fresh: bool = False) -> None:
        sp.epilog = PATHS_HELP
        sp.add_argument("--config", help="YAML config (see configs/); its relative paths are relative to it")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override, e.g. distill.r=0.2 (typed by YAML; a relative path is relative to the "
                             "current folder)")
        if out:
            sp.add_argument("--out", help="output folder (overrides out_dir; relative to the current folder)")
        sp.add_argument("--address", help="join this Ray cluster (GCS host:port, ray://..., or auto: the one `ray start` "
                                          "recorded here); default: RAY_ADDRESS, else a Ray of this command's own")
        if fresh:
            sp.add_argument("--fresh", action="store_true",
                            help="train every stage again, even those finished earlier in the output folder with "
                                 "the same config, data and code (by default they are reused)")

    sp = command("validate", help="check a config, or a whole command after --, and print the resolved "
                                         "config (YAML); starts nothing")
    common(sp)
    sp.add_argument("--quick", action="store_true", help="the small preset (configs/quick.yaml)")
    sp.add_argument("--no-paths", action="store_true",
                    help="skip what looks at the filesystem (data, raw logs, out_dir, storage, checkpoints): to "
                         "check a cluster command whose /mnt/... paths exist only there")
    sp.add_argument("command_line", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                    help="a whole command line to check as that command would, e.g. -- zoo --config C --models lr dnn")
    sp.set_defaults(func=cmd_validate)

    sp = command("prepare", help="raw or synthetic logs -> encoded parquet + feature map")
    common(sp, out=False)
    sp.add_argument("--force", action="store_true", help="rebuild even if the data exists")
    sp.add_argument("--num-periods", type=int, default=None, help="split raw rows into this many periods (default data.num_periods)")
    sp.add_argument("--min-count", type=int, default=None, help="vocabulary min count for raw logs (default data.min_count)")
    sp.set_defaults(func=cmd_prepare)

    sp = command("train", help="train the config's teacher model on the history periods")
    common(sp, fresh=True)
    sp.set_defaults(func=cmd_train)

    sp = command("evaluate", help="evaluate a checkpoint on a period range")
    sp.add_argument("--checkpoint", required=True)
    sp.add_argument("--data", required=True, help="encoded data root (holds feature_map.json)")
    sp.add_argument("--periods", required=True, help="START:END (half-open) or one period")
    sp.set_defaults(func=cmd_evaluate)

    sp = command("transfer", help="offline stage: teacher, projection, every method over seeds")
    common(sp, fresh=True)
    sp.add_argument("--quick", action="store_true", help="the small preset (configs/quick.yaml)")
    sp.set_defaults(func=cmd_transfer)

    sp = command("online", help="online stage: replay the stream through the actor pair, every method")
    common(sp)
    sp.add_argument("--quick", action="store_true", help="the small preset (configs/quick.yaml)")
    sp.add_argument("--teacher", help="teacher checkpoint (default: the one in OUT/results.json)")
    sp.add_argument("--student", help="student checkpoint (default: OUT's offline crossadapt student, first seed)")
    sp.set_defaults(func=cmd_online)

    sp = command("zoo", help="train zoo models on the history and score them on the test period(s)")
    common(sp, fresh=True)
    sp.add_argument("--quick", action="store_true", help="the small preset (configs/quick.yaml)")
    sp.add_argument("--models", nargs="+", default=["lr", "dnn", "dcnv2"], help="registry names")
    sp.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    sp.set_defaults(func=cmd_zoo)

    sp = command("tune", help="Ray Tune over a search space (ASHA, resumable, results table)")
    common(sp, fresh=True)
    sp.add_argument("--space", required=True, help="search space file, e.g. tune_spaces/offline.yaml")
    sp.add_argument("--quick", action="store_true", help="the small preset (configs/quick.yaml)")
    sp.set_defaults(func=cmd_tune)

    sp = command("export", help="a student as a torch.export program + feature map + vocabularies, for serving")
    sp.add_argument("--out", required=True, help="folder to write (must be absent or empty, unless --force)")
    sp.add_argument("--checkpoint", help="student checkpoint (default: from the config's out_dir results.json: "
                                         "--method's student after the online stage, else its offline one)")
    sp.add_argument("--config", help="YAML config (its out_dir and data.root)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. out_dir=runs/x")
    sp.add_argument("--data", help="encoded data root whose vocab.json to ship (default: the config's data.root)")
    sp.add_argument("--method", default="crossadapt", help="method whose student to export (default crossadapt)")
    sp.add_argument("--seed", type=int, default=None, help="seed whose student to export (default: the first)")
    sp.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    sp.set_defaults(func=cmd_export)

    sp = command("compare", help="side-by-side table of experiment folders (their results.json)")
    sp.add_argument("run_dirs", nargs="+", help="experiment folders (out_dir of earlier runs)")
    sp.set_defaults(func=cmd_compare)

    sp = command("tables", help="the README's result tables (Markdown) from a run folder's results.json")
    sp.add_argument("run_dir", help="an experiment folder (out_dir of an earlier run)")
    sp.add_argument("--readme", default=None, help="write the tables into this README's block instead of printing")
    sp.add_argument("--name", default="demo", help="the README block: <!-- results: NAME --> ... <!-- /results -->")
    sp.set_defaults(func=cmd_tables)

    sp = command("demo", help="the whole pipeline on synthetic logs: results.json + report.md")
    common(sp, fresh=True)
    sp.add_argument("--quick", action="store_true", help="the small preset (configs/quick.yaml)")
    sp.set_defaults(func=cmd_demo)
    return p


def error_message(e: CrossAdaptError) -> str:
    """The message of an error we raised on purpose; one raised in a Ray task or actor arrives wrapped
    (a ``RayTaskError`` that is also an instance of its cause), and its cause's message is the one."""
    cause = getattr(e, "cause", None)
    return str(cause if isinstance(cause, CrossAdaptError) else e)


def main(argv: list[str] | None = None) -> int:
    """Run the command; an error raised on purpose (bad config, data or teacher) is one line and exit 2,
    Ctrl-C one line saying what a rerun does and exit 130."""
    args = build_parser().parse_args(argv)
    log.setup(getattr(args, "level", log.NORMAL))
    if getattr(args, "address", None):  # read by crossadapt.ray_init.init_ray, as Ray's own tools do
        os.environ["RAY_ADDRESS"] = args.address
    try:
        return args.func(args)
    except CrossAdaptError as e:
        print(f"crossadapt: error: {error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except SystemExit as e:
        # Ray Train's Ctrl-C handler, active while a run trains, ends the driver with sys.exit(0)
        # (ray/train/v2/api/data_parallel_trainer.py); no command here exits that way on its own.
        if e.code in (0, None):
            return _interrupted(args.command)
        raise


def _interrupted(command: str) -> int:
    """One line on Ctrl-C: what was interrupted and what rerunning does; exit status 130 (SIGINT)."""
    print(f"\ncrossadapt: {command} interrupted; {RESUME.get(command, 'nothing to resume')}", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
