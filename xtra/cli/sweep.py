"""``xtra sweep``: the whole pipeline over games x conditions x seeds as a graph of jobs, on a
local process pool or a Ray cluster (:mod:`xtra.pipeline.sweep`, docs/sweeps.md)."""

from __future__ import annotations

import argparse
import dataclasses

from xtra.cli.common import check_output_dir, positive_int


def cmd_sweep(args: argparse.Namespace) -> int:
    from xtra.errors import XtraError
    from xtra.pipeline.sweep import STATUS, expand, job_table, load_sweep, run_sweep

    if args.address is not None and args.backend != "ray":
        raise XtraError("--address is for --backend ray: drop it or add --backend ray")
    spec = load_sweep(args.sweep)
    # A subset or extension of the file's grid in the same directory: finished jobs are reused.
    if args.conditions or args.seeds:
        spec = dataclasses.replace(
            spec,
            conditions=tuple(args.conditions or spec.conditions),
            seeds=tuple(args.seeds or spec.seeds),
        ).validate()
    if args.dry_run:
        jobs = expand(spec, args.out)
        print(f"sweep {spec.name}: {len(jobs)} jobs under {args.out}")
        print(job_table(jobs, args.out))
        return 0
    out = check_output_dir(args.out, "--out")
    status = run_sweep(spec, out, backend=args.backend, workers=args.workers, address=args.address)
    c = status["counts"]
    print(f"{c['done']} of {len(status['jobs'])} jobs done; status: {out / STATUS}")
    failed = [j for j in status["jobs"] if j["state"] == "failed"]
    for j in failed:
        print(f"failed: {j['name']}: {j['error']}")
    if failed:
        print(f"{c['blocked']} jobs blocked by them; fix the cause and run the same command again")
        return 1
    return 0


def register(sub) -> None:
    """Add ``sweep`` to the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "sweep",
        help="run a sweep (datasets, teachers, student, finetuning x conditions x seeds) locally "
        "or on Ray; rerunning resumes",
    )
    p.add_argument(
        "sweep",
        metavar="SWEEP",
        help="a sweep YAML file, a shipped sweep (transfer-minatar, transfer-family) or a "
        "pretraining recipe name",
    )
    p.add_argument("--out", required=True, help="the sweep's directory (every node must see it)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="jobs at once (local default 2, one thread each; ray default: as the cluster fits)",
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: auto or HOST:PORT (default: start a local Ray)",
    )
    p.add_argument(
        "--conditions",
        nargs="+",
        metavar="CONDITION",
        help="run these finetuning conditions instead of the file's (e.g. to add an ablation "
        "to a finished sweep: its datasets, teachers and student are reused)",
    )
    p.add_argument(
        "--seeds", nargs="+", type=int, metavar="SEED", help="these seeds instead of the file's"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the jobs and their dependencies, run none"
    )
    p.set_defaults(func=cmd_sweep)
