"""Issue 14's eight ways to fail, run against a source tree: what each ends in.

    python benchmarks/failure_items.py [--src PATH/TO/src] [--out items.json]

``--src`` (default: this checkout's src) is put first on PYTHONPATH of every ``fif`` it starts, so
the same script measures an older tree side by side (``git worktree add /tmp/old <commit>``,
``--src /tmp/old/src``). For each item it prints the exit status, how many lines stderr had and
its last one, the status and error in results.json, and the files a refused or failed run left:
a diverging run (lr=1e6), two runs into one folder at once, a missing backbone checkpoint, a pool
sample without a caption, log.folder a file or read-only (as user nobody through setpriv, when
run as root), a full disk while checkpointing (RLIMIT_FSIZE), lr=nan, num_workers=-1 on a FiF
root, weight_decay=-0.1, LoRA rank 1000, fif report on a corrupt results.json, file modes under
umask 022 and a kill's temporary files after a resume. Numbers, not a test: tests/test_bad_*.py
assert the messages.
"""
import argparse, json, os, shutil, subprocess, sys, tarfile, tempfile, io, time, stat
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--src", default=str(REPO / "src"), help="source tree to measure (PYTHONPATH)")
parser.add_argument("--out", default=None, help="also write the numbers as JSON here")
ARGS = parser.parse_args()
SRC, OUT = ARGS.src, ARGS.out
PY = sys.executable
SHORT = ["experiment.task.num=2", "experiment.task.n_samples=256", "log.progress=false"]
sys.path.insert(0, str(REPO / "src"))
from fif.data.mini.build import build_datasets, default_root, pool_shards  # noqa: E402
MINI = build_datasets(default_root(0)); pool_shards(MINI, 4)
WORK = Path(tempfile.mkdtemp(prefix="items_"))
ENV = {**os.environ, "PYTHONPATH": SRC}
LIMITED = ("import os, resource, signal, sys\n"
           "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
           "resource.setrlimit(resource.RLIMIT_FSIZE, (10485760, 10485760))\n"
           "from fif.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def fif(args, prefix=None, umask=None, wait=True):
    code = prefix or "import sys; from fif.cli import main; sys.exit(main(sys.argv[1:]))"
    pre = (lambda: os.umask(umask)) if umask is not None else None
    if not wait:
        return subprocess.Popen([PY, "-c", code, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=pre)
    return subprocess.run([PY, "-c", code, *args], env=ENV, capture_output=True, text=True, preexec_fn=pre)


def summary(rc, err, run=None):
    lines = [l for l in err.strip().splitlines() if l.strip()]
    out = {"exit": rc, "stderr_lines": len(lines), "last_line": lines[-1][:300] if lines else ""}
    if run is not None:
        run = Path(run)
        res = run / "results.json"
        if res.is_file():
            try:
                data = json.loads(res.read_text())
                out["status"] = data.get("status")
                out["error"] = data.get("error")
                out["tasks_recorded"] = len(data.get("tasks", []))
            except Exception as e:
                out["status"] = f"unreadable: {e}"
        out["files_left"] = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()) if run.exists() else []
    return out


def case(name, args, run, **kw):
    r = fif(args, **kw)
    return summary(r.returncode, r.stderr, run)


R = {}
runs = WORK / "runs"
# 1: divergence
args = ["run", *SHORT, f"log.folder={runs}", "log.name=diverge", "experiment.optimizer.lr=1e6",
        "log.checkpoint=true", "log.checkpoint_every_steps=1"]
R["1_lr_1e6"] = case("1", args, runs / "diverge")
try:
    d = json.loads((runs / "diverge/results.json").read_text())
    R["1_lr_1e6"]["final_A_KA"] = (d.get("summary") or {}).get("final", {}).get("A_KA") if isinstance(d.get("summary"), dict) else None
    R["1_lr_1e6"]["points"] = [t.get("A_KA") for t in d.get("tasks", [])]
except Exception as e:
    R["1_lr_1e6"]["read"] = str(e)

# 2: two runs at once into the same folder
args = ["run", *SHORT, f"log.folder={runs}", "log.name=twice"]
a = fif(args, wait=False); time.sleep(1.0); b = fif(args, wait=False)
ea, eb = a.communicate()[1], b.communicate()[1]
R["2_concurrent"] = {"first": summary(a.returncode, ea), "second": summary(b.returncode, eb)}
try:
    ev = [json.loads(l) for l in (runs / "twice/events.jsonl").read_text().splitlines()]
    R["2_concurrent"]["run_start_events"] = sum(1 for e in ev if e.get("event") in ("start", "run_start", "config"))
    R["2_concurrent"]["events"] = len(ev)
except Exception as e:
    R["2_concurrent"]["events_read"] = str(e)

# 3: bogus backbone checkpoint
R["3_checkpoint"] = case("3", ["run", *SHORT, f"log.folder={runs}", "log.name=ckpt",
                               "experiment.backbone.checkpoint=/no/such.pt"], runs / "ckpt")

# 4: pool sample without caption, skip_corrupt=true
with tarfile.open(MINI / "pool" / "shard-00000.tar") as tar:
    members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()[:600]]
key = members[2][0].name.split(".")[0]
pool = WORK / "pool"; pool.mkdir()
with tarfile.open(pool / "shard-00000.tar", "w") as tar:
    for info, data in members:
        if not (info.name.startswith(key + ".") and info.name.endswith(".txt")):
            tar.addfile(info, io.BytesIO(data))
for skip in ("false", "true"):
    R[f"4_captionless_skip_{skip}"] = case("4", ["run", *SHORT, "experiment.task.num=1", f"log.folder={runs}",
                                                 f"log.name=pool{skip}", f"experiment.dataset.pretraining_pool={pool}",
                                                 "experiment.dataset.pool_shuffle_buffer=1",
                                                 f"experiment.dataset.skip_corrupt={skip}"], runs / f"pool{skip}")

# 5: tracebacks
afile = WORK / "afile"; afile.write_text("x")
R["5a_log_folder_file"] = case("5a", ["run", *SHORT, f"log.folder={afile}", "log.name=x"], None)
ro = Path(tempfile.mkdtemp(prefix="ro_", dir="/tmp"))
ro.chmod(0o755); (ro / "runs").mkdir(); (ro / "runs").chmod(0o555)
if os.geteuid() != 0 or shutil.which("setpriv") is None:  # as a user, a 0555 folder is read-only already
    r = fif(["run", *SHORT, f"log.folder={ro / 'runs'}", "log.name=x"])
else:  # root writes anywhere: run as user nobody, with a HOME of its own (the mini cache goes there)
    (ro / "home").mkdir(); os.chown(ro / "home", 65534, 65534)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PY, "-c",
                        "import sys; from fif.cli import main; sys.exit(main(sys.argv[1:]))", "run", *SHORT,
                        f"log.folder={ro / 'runs'}", "log.name=x"], env={**ENV, "HOME": str(ro / "home")}, cwd=ro,
                       capture_output=True, text=True)
R["5b_log_folder_read_only"] = summary(r.returncode, r.stderr, ro / "runs" / "x")
full_args = ["run", *SHORT, f"log.folder={runs}", "log.name=full", "log.checkpoint=true",
             "log.checkpoint_every_steps=1", "log.keep_checkpoints=5"]
R["5c_disk_full"] = case("5c", full_args, runs / "full", prefix=LIMITED, umask=0o022)
R["5d_lr_nan"] = case("5d", ["run", *SHORT, f"log.folder={runs}", "log.name=nan", "experiment.optimizer.lr=nan"],
                      runs / "nan")
sys.path.insert(0, str(REPO / "tests"))
from fif_root_factory import make_fif_root, stream_entries  # noqa: E402
root = make_fif_root(WORK / "root", layout="both").root
stream = WORK / "stream.json"; stream.write_text(json.dumps(stream_entries()))
FIF_RUN = ["experiment.backbone.name=mini_clip", "experiment.task.num=1", "experiment.task.n_samples=32",
           "experiment.task.batch_size=32", "experiment.dataset.data_mixture.pretraining=0",
           "experiment.dataset.data_mixture.update=0.5", "experiment.dataset.data_mixture.buffer=0.5",
           "log.progress=false"]
R["5e_num_workers_-1"] = case("5e", ["run", *FIF_RUN, f"experiment.dataset.root={root}",
                                     f"experiment.dataset.sequence={stream}", f"log.folder={runs}", "log.name=nw",
                                     "experiment.dataset.num_workers=-1"], runs / "nw")
# 6: accepted silently
R["6a_weight_decay_-0.1"] = case("6a", ["run", *SHORT, f"log.folder={runs}", "log.name=wd",
                                        "experiment.optimizer.weight_decay=-0.1"], runs / "wd")
R["6b_lora_rank_1000"] = case("6b", ["run", *SHORT, f"log.folder={runs}", "log.name=lora", "continual.method=lora",
                                     "continual.lora.rank=1000"], runs / "lora")
# 7: report on corrupt results.json
bad = WORK / "bad"; shutil.copytree(runs / "twice", bad / "r")
(bad / "r" / "results.json").write_text('{"tasks": [')
r = fif(["report", str(bad), "--out", str(WORK / "rep.html")])
R["7_report_corrupt"] = summary(r.returncode, r.stderr + r.stdout)
# 8: status after an error (the disk-full run), modes under umask 022, stale .tmp on resume
R["8_status_after_error"] = {k: R["5c_disk_full"].get(k) for k in ("status", "error")}
full = runs / "full"
R["8_modes_umask_022"] = {str(p.relative_to(full)): oct(stat.S_IMODE(p.stat().st_mode))
                          for p in sorted(full.rglob("*")) if p.is_file()}
stale = full / ".results.json.k3j9x0ab.tmp"; stale.write_text("half")
stale2 = full / "checkpoints" / ".step_000000001.pt.a1b2c3d4.tmp"; stale2.parent.mkdir(exist_ok=True); stale2.write_text("h")
r = fif([*full_args, "log.resume=true"], umask=0o022)
R["8_resume_after_full"] = summary(r.returncode, r.stderr, full)
R["8_stale_tmp_after_resume"] = [str(p.relative_to(full)) for p in (stale, stale2) if p.exists()]
if OUT:
    Path(OUT).write_text(json.dumps(R, indent=1))
shutil.rmtree(WORK, ignore_errors=True); shutil.rmtree(ro, ignore_errors=True)
for item, numbers in R.items():  # one line per item: the fields that say how it ended
    print(f"{item}: " + json.dumps(numbers)[:400])
