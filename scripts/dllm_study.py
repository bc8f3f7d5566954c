"""Run the dLLM PTQ grid, write the results: python scripts/dllm_study.py --device cuda --workers 15 --eval-in-workers

Jobs append to --out (JSONL) as they finish, so a rerun resumes; --report-only rebuilds results/dllm_ptq.{md,csv,png}
from the JSONL without running anything (seconds, no GPU; `make tables` does that). Keep what the grid prints as
<out stem>.log (`... | tee results/dllm_ptq.log`): the report reads the command, machine and wall time from it.
"""
import argparse
import json
import time
from dataclasses import asdict, fields

from qsched_core.dllm.runlog import machine_info
from qsched_core.dllm.study import StudyConfig, run_study


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-report", action="store_true", help="run the grid only (e.g. on a machine without matplotlib)")
    p.add_argument("--analysis", action="store_true",
                   help="instead of the grid: outlier analysis + CPU speed -> results/dllm_outliers.*, dllm_cpu_speed.json")
    for f in fields(StudyConfig):
        if isinstance(f.default, bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", action="store_true", default=None)
        elif isinstance(f.default, tuple):
            p.add_argument(f"--{f.name.replace('_', '-')}", default=None, help="comma-separated")
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None)
    args = vars(p.parse_args())
    report_only, no_report, analysis = args.pop("report_only"), args.pop("no_report"), args.pop("analysis")
    kw = {}
    for f in fields(StudyConfig):
        v = args[f.name]
        if v is not None:
            kw[f.name] = tuple((int if f.name == "seeds" else str)(s) for s in v.split(",")) \
                if isinstance(f.default, tuple) else v
    cfg = StudyConfig(**kw)
    print(json.dumps(asdict(cfg)), flush=True)
    if analysis:
        from qsched_core.dllm.analysis import run_analysis
        print(json.dumps(run_analysis(cfg.model_dir, "results"), indent=1), flush=True)
        return
    if not report_only:
        t0 = time.perf_counter()
        print(json.dumps({"machine": machine_info(cfg.device)}), flush=True)
        run_study(cfg)
        print(json.dumps({"wall_s": round(time.perf_counter() - t0, 1)}), flush=True)
    if not no_report:
        from qsched_core.dllm.report import write_report
        print(write_report(cfg.out), flush=True)


if __name__ == "__main__":
    main()
