"""``xtra report DIR... --out OUT``: tables and figures of finished runs (:mod:`xtra.report.document`)."""

from __future__ import annotations

import argparse

from xtra.cli.common import check_input_dir, check_output_dir, positive_int

DEFAULT_BASELINE = "EfficientZero"


def comma_list(choices: tuple[str, ...]):
    """An argparse type: a comma-separated subset of ``choices`` (``all``: every one)."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(s.strip() for s in text.split(",") if s.strip())
        bad = [s for s in items if s not in choices + ("all",)]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give a comma-separated list of {', '.join(choices)} (or all)"
            )
        return choices if "all" in items else items

    return parse


def cmd_report(args: argparse.Namespace) -> int:
    from xtra.pipeline.results import find_runs, require_runs
    from xtra.report.document import write_report
    from xtra.report.scores import find_method, method_key

    for d in args.dirs:
        check_input_dir(d, "DIR", "a directory of runs, an experiment or a sweep")
    out = check_output_dir(args.out, "--out")
    found = find_runs(args.dirs, args.stages)
    require_runs(found, args.dirs, args.stages)
    methods = {r.method for r in found.rows}
    if args.baseline is not None:
        baseline = find_method(found.rows, args.baseline)
    elif any(method_key(m) == method_key(DEFAULT_BASELINE) for m in methods):
        baseline = find_method(found.rows, DEFAULT_BASELINE)
    else:
        baseline = None
    notes = []
    if found.unfinished:
        notes.append(f"{len(found.unfinished)} unfinished runs (no final.json) left out")
    for stage, n in sorted(found.skipped_stages.items()):
        notes.append(f"{n} {stage} runs left out (--stages all includes them)")
    if baseline is None:
        notes.append(
            f"no {DEFAULT_BASELINE} runs: no improvement, baseline normalisation or probability "
            "of improvement (--baseline METHOD names another)"
        )
    report = write_report(
        found.rows,
        out,
        baseline=baseline,
        formats=args.format,
        reps=args.reps,
        seed=args.seed,
        notes=notes,
    )
    print(
        f"{len(found.rows)} scores from runs of {len(methods)} methods; "
        f"{len(report.tables)} tables, {len(report.figures)} figures"
    )
    for n in report.notes:
        print(f"note: {n}")
    print(f"report: {report.out / 'report.md'}")
    return 0


def register(sub) -> None:
    """Add ``report`` to the top-level subparsers ``sub``."""
    from xtra.report.scores import ONLINE_STAGES, STAGES
    from xtra.report.tables import FORMATS

    p = sub.add_parser(
        "report",
        help="tables (Markdown, CSV, LaTeX) and figures of finished runs: per game, the paper's "
        "Table 1 layout, rliable aggregates",
    )
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="directories searched for finished runs (config.yaml + final.json)",
    )
    p.add_argument("--out", required=True, help="directory of the report (created if missing)")
    p.add_argument(
        "--format",
        type=comma_list(FORMATS),
        default=FORMATS,
        help="table formats, comma-separated: md, csv, tex (default all)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="the method others are compared with, as the runs name it (case and punctuation "
        f"ignored; default {DEFAULT_BASELINE} when there are such runs)",
    )
    p.add_argument(
        "--stages",
        type=comma_list(STAGES),
        default=ONLINE_STAGES,
        help="stages of the runs reported (default train,finetune: the runs on a target game; "
        "all adds teachers and students)",
    )
    p.add_argument(
        "--reps",
        type=positive_int,
        default=2000,
        help="bootstrap resamples of every confidence interval (default 2000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.set_defaults(func=cmd_report)
