"""Read W&B offline run files (``run-<id>.wandb``) back, to check what ``wandb sync`` would upload.

The file is a LevelDB-style log (a 7-byte header, then 32 KiB blocks of records: crc u32, length
u16, type u8, payload) whose payloads are ``wandb_internal_pb2.Record`` protobufs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> list[bytes]:
    out, buf, pos = [], b"", 7
    while pos + 7 <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < 7:  # block trailer: padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            out.append(payload)
        elif kind == _FIRST:
            buf = payload
        elif kind == _MIDDLE:
            buf += payload
        elif kind == _LAST:
            out.append(buf + payload)
    return out


def read_run(path: str | Path) -> dict[str, Any]:
    """``{"name", "group", "job_type", "project", "config": {...}, "history": [{...}], "summary": {...}}``."""
    from wandb.proto import wandb_internal_pb2 as pb

    run: dict[str, Any] = {"history": [], "summary": {}, "config": {}}
    for raw in _payloads(Path(path).read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.update(name=r.display_name, group=r.run_group, job_type=r.job_type, project=r.project)
            run["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            run["history"].append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            run["summary"].update({"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in rec.summary.update})
    return run


def offline_runs(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every offline run under ``<out_dir>/wandb``, decoded."""
    return [read_run(p) for p in sorted(Path(out_dir, "wandb").glob("offline-run-*/run-*.wandb"))]
