"""The A/B runner of `jaxbench ab`: base against head, measured in the same job, for a CI regression gate.

The sides are two git revisions of the repository in the current folder (`--base REV --head REV`,
each checked out in a temporary worktree, removed afterwards; the repository may be this suite or
a package of your own workloads), or two Python environments (`--base-python --head-python`),
or both. Without `--head` the head is the current folder as it is.

How it measures: each side runs in `--workers` long-lived worker processes (`bench.ab.worker`).
Each compiles every selected benchmark once, checks it against its own side's baseline and
reports its exact figures. Then, batch after batch, every benchmark still undecided is measured
in every pair of workers (base i, head i), in random order: a block pair alternates short slices
of timed rounds of one side and of the other, so drift in the machine hits both alike, and gives
one ratio, the median of head's rounds over base's. A fresh process runs the same compiled step a
few percent faster or slower than another, for good, so the unit of the statistics is the worker
pair: each pair's median ratio is one measurement, and the interval and test are a t-interval and
t-test over the pairs (`reports.verdicts.paired_verdict`); several workers a side let "head is
slower" stand apart from "head's process happened to be slower". Batches go on while a benchmark
is `inconclusive`, up to `--max-pairs` pairs or `--max-time` seconds. With `--compile-times`, each
compiled benchmark's cold compile time is then paired the same way, over the same worker pairs
(`ABRun._measure_compiles`), a row of its own.
"""

from __future__ import annotations

import json
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jaxbench.bench.ab import protocol
from jaxbench.bench.ab.harness import is_jaxbench
from jaxbench.bench.options import Selection
from jaxbench.reports.gate import GateResult
from jaxbench.reports.verdicts import MIN_MEASUREMENTS, MIN_WORKER_PAIRS, exact_changes, family_alpha, paired_verdict
from jaxbench.workloads.program import program_diff

WORKER_MODULE = "jaxbench.bench.ab.worker"
GATE_ROOT = Path(__file__).resolve().parents[2]
"""The folder of this gate's own `bench`, `reports` and `workloads`: a checkout's root, or the
installed `jaxbench` package's folder."""
DEFAULTS = {"threshold": 0.05, "workers": 4, "block_time": 0.25, "max_pairs": 40, "max_time": 900.0,
            "worker_timeout": 900.0, "save_hlo": None, "compile_threshold": None, "compiles": 2}
"""The options' defaults; `worker_timeout`: seconds a worker may take to get ready, or to answer;
`save_hlo`: a folder where each side's first worker writes its compiled programs (`--save-hlo`);
`compile_threshold`: the growth of a step's cold compile time that is a regression, None for not
measuring it (`--compile-times`); `compiles`: compilation pairs per worker pair."""
COMPILE_THRESHOLD = 0.2
"""`--compile-threshold`'s default: a cold compile is not timed in blocks of many rounds, so its
ratio between two processes is noisier than a step's."""
COMPILE_ROW = " compile"
"""What a benchmark's cold-compile row adds to its name."""


CALIBRATION_ROUNDS = 3
"""Rounds each side runs of a benchmark to size its blocks, before the first batch."""
SLICE_S = 0.02
"""Seconds of rounds one side runs before the other side's turn within a block pair (at least a round)."""


class ABError(Exception):
    """Bad input or a side that cannot be measured; the message is one line."""


@dataclass
class Side:
    """One side of the comparison: the folder its code comes from and the Python that runs it."""

    name: str  # "base" or "head"
    label: str  # what the user named: a revision (with its commit) or an interpreter
    folder: Path
    python: str

    def environment(self) -> dict:
        """The worker's environment: the side's folder (and its src/) first on the Python path, so
        a package of workloads at this revision is the one imported; on a GPU, no worker takes
        most of its memory up front (JAX's default), since all the workers share the device."""
        paths = [str(self.folder)] + ([str(self.folder / "src")] if (self.folder / "src").is_dir() else [])
        existing = os.environ.get("PYTHONPATH")
        return {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", **os.environ,
                "PYTHONPATH": os.pathsep.join(paths + ([existing] if existing else [])),
                "PYTHONDONTWRITEBYTECODE": "1", protocol.VERSION_VARIABLE: str(protocol.VERSION)}


def git(repository: Path, *args: str) -> str:
    """`git -C repository ARGS`'s output; `ABError` with git's last line of error where it fails."""
    proc = subprocess.run(["git", "-C", str(repository), *args], capture_output=True, text=True)
    if proc.returncode:
        raise ABError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git {' '.join(args)} failed")
    return proc.stdout.strip()


def repository_root(folder: Path, options: str = "--base/--head") -> Path:
    """The git repository the current folder is in; `ABError` if it is in none, naming the
    `options` that give its revisions."""
    try:
        return Path(git(folder, "rev-parse", "--show-toplevel"))
    except ABError:
        raise ABError(f"{folder} is not in a git repository: {options} name revisions of one") from None


@contextmanager
def worktree(repository: Path, revision: str):
    """`revision` of `repository` checked out in a temporary folder (removed afterwards)."""
    try:
        commit = git(repository, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    except ABError:
        commit = ""
    if not commit:
        raise ABError(f"unknown revision {revision!r} in {repository}")
    folder = Path(tempfile.mkdtemp(prefix=f"jaxbench-ab-{commit[:8]}-"))
    git(repository, "worktree", "add", "--detach", "--force", str(folder), commit)
    try:
        yield folder, commit
    finally:
        subprocess.run(["git", "-C", str(repository), "worktree", "remove", "--force", str(folder)],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def check_python(option: str, python: str) -> str:
    """`python`, where it is an interpreter on the path or a file; else `ABError` naming `option`."""
    if not (shutil.which(python) or Path(python).is_file()):
        raise ABError(f"{option} {python}: no such Python interpreter")
    return python


@contextmanager
def sides(base: str | None, head: str | None, base_python: str | None, head_python: str | None,
          folder: Path):
    """(base Side, head Side) for the options given; worktrees removed when the block ends."""
    if not (base or head or base_python or head_python):
        raise ABError("nothing to compare: give --base REV (and --head REV), or --base-python and --head-python")
    with ExitStack() as stack:
        made = []
        for name, revision, python, option in (("base", base, base_python, "--base-python"),
                                               ("head", head, head_python, "--head-python")):
            python = check_python(option, python) if python else sys.executable
            code, label = folder, "the current folder"
            if revision:
                code, commit = stack.enter_context(worktree(repository_root(folder), revision))
                label = f"{revision} ({commit[:10]})"
                if (code / "bench").is_dir() and not is_jaxbench(code):
                    raise ABError(f"revision {revision!r} of jaxbench predates `reports ab` (it has no "
                                  "bench/ab/worker.py): choose a later base")
                if is_jaxbench(code) and not (code / "jaxbench" / "__init__.py").is_file():
                    raise ABError(f"revision {revision!r} of jaxbench predates its one import name "
                                  "`jaxbench` (it has no jaxbench/__init__.py): choose a later base")
            if python != sys.executable:
                label += f" with {python}"
            made.append(Side(name, label, code, python))
        yield tuple(made)


class WorkerError(ABError):
    """A worker that crashed, hung or could not start; the message says which and why, `side`
    whose worker it was ("base" or "head")."""

    def __init__(self, message: str, side: str):
        super().__init__(message)
        self.side = side


def harness_root(base: Side) -> Path:
    """Whose `bench` and `reports` (timing harness, checks, protocol) every worker of both sides
    measures with: base's where base is a revision of jaxbench, so that a head that edits them is
    judged by base's; else this gate's own. The side's own code is only its workloads and models."""
    return base.folder if is_jaxbench(base.folder) else GATE_ROOT


class Worker:
    """One `bench.ab.worker` process of a side: started, asked for blocks, stopped. Its `bench`
    and `reports` come from `harness` (`harness_root`), its workloads from the side."""

    def __init__(self, side: Side, index: int, arguments: list[str], harness: Path = GATE_ROOT):
        self.side, self.index = side, index
        self.name = f"{side.name} worker {index + 1}"
        self.errors = tempfile.TemporaryFile(mode="w+")
        command = [side.python, str(GATE_ROOT / "bench" / "ab" / "harness.py"), str(harness), WORKER_MODULE]
        try:
            self.process = subprocess.Popen([*command, *arguments],
                                            cwd=side.folder, env=side.environment(), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=self.errors, text=True, bufsize=1)
        except OSError as error:
            raise WorkerError(f"{self.name}: cannot start {side.python}: {error.strerror or error}",
                              side.name) from None
        self.messages: queue.Queue = queue.Queue()
        self.ready: dict = {}  # its `ready` message, once it came
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            message = protocol.message_of(line)
            if message is not None:
                self.messages.put(message)
        self.messages.put(None)  # the process closed its output: it ended

    def _why_it_ended(self) -> str:
        self.process.wait(timeout=30)
        self.errors.seek(0)
        lines = [line for line in self.errors.read().strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "no error output"
        if last.startswith("ModuleNotFoundError: No module named"):  # jaxbench's or a dependency of it
            return f"{self.side.python} cannot run jaxbench's A/B worker ({last}): install jaxbench there"
        return f"exited with status {self.process.returncode}: {last}"

    def receive(self, timeout: float) -> dict:
        """The worker's next message; `WorkerError` if it ends or is silent for `timeout` seconds."""
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            self.stop(graceful=False)
            raise WorkerError(f"{self.name} ({self.side.label}) did not answer within {timeout:g} s "
                              "and was stopped", self.side.name) from None
        if message is None:
            raise WorkerError(f"{self.name} ({self.side.label}) {self._why_it_ended()}", self.side.name)
        if "error" in message:
            raise ABError(f"{self.side.name} ({self.side.label}): {message['error']}")
        problem = protocol.version_problem(message.get("protocol"), "runner") if "ready" in message else None
        if problem:
            raise ABError(f"{self.side.name} ({self.side.label}): {problem}")
        if "ready" in message:
            self.ready = message
        return message

    def block(self, case: str, rounds: int, timeout: float) -> list[float]:
        """`rounds` timed rounds of `case`, seconds each."""
        return self._ask({"case": case, "rounds": rounds}, timeout)["times"]

    def compiles(self, case: str, count: int, timeout: float) -> list[float]:
        """The seconds of `count` cold compilations of `case`'s step."""
        return self._ask({"compile": case, "count": count}, timeout)["compile_s"]

    def _ask(self, request: dict, timeout: float) -> dict:
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(f"{self.name} ({self.side.label}) {self._why_it_ended()}", self.side.name) from None
        return self.receive(timeout)

    def stop(self, graceful: bool = True) -> None:
        """Ask the worker to quit, and kill it if it has not within seconds (at once unless
        `graceful`: a comparison that ended in an error keeps nothing a worker would finish)."""
        try:
            if graceful and self.process.poll() is None:
                self.process.stdin.write(json.dumps({"quit": True}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.errors.close()


@dataclass
class Benchmark:
    """One benchmark both sides have: its exact changes, how a block pair is cut into slices
    (`slices` of `rounds` rounds a side, alternating) and the ratios so far."""

    case: str
    rounds: int
    slices: int = 1
    changes: list = field(default_factory=list)
    program: str = ""  # what changed in the compiled program (`workloads.program.program_diff`)
    ratios: list[float] = field(default_factory=list)
    clusters: list[int] = field(default_factory=list)


def look_batches(max_pairs: int, workers: int) -> list[int]:
    """The batches after which a benchmark may be decided: 2, 4, 8, ... and the last batch that
    `max_pairs` allows (each batch adds one pair per worker pair)."""
    last = max(1, math.ceil(max_pairs / workers))
    looks = [batch for batch in (2 ** k for k in range(1, last.bit_length() + 1)) if batch < last]
    return looks + [last]


def worker_arguments(selection: Selection, devices: int) -> list[str]:
    """The worker's command line for `selection` (`bench.options`, as the worker parses it)."""
    keyword = ["-k", selection.keyword] if selection.keyword else []
    return ["--devices", str(devices), *selection.arguments(), *keyword]


def _progress(text: str) -> None:
    print(text, flush=True)


class ABRun:
    """One A/B comparison over a pair of sides (see the module docstring)."""

    def __init__(self, base: Side, head: Side, selection: Selection, options: dict, seed: int | None = None):
        self.base, self.head, self.selection = base, head, selection
        self.options = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
        self.rng = np.random.default_rng(seed)
        self.result = GateResult(method="", threshold=self.options["threshold"])
        self.started = time.monotonic()

    def run(self) -> GateResult:
        """Measure the single-device benchmarks, then (on a CPU) the multi-device ones in workers
        with `cpu_devices` virtual devices, as `pytest bench` does."""
        versions, elsewhere = self._group(1)
        if elsewhere:
            self._group(self.selection.cpu_devices)
        result = self.result
        if not (result.rows or result.only_base or result.only_head or result.warnings):
            raise ABError("the selection matches no step benchmark on either side (ab compares steps; "
                          "the workflows bayes, checkpoint and training_loop are measured by pytest bench only)")
        opts = self.options
        if opts["workers"] < MIN_WORKER_PAIRS:
            self.result.warnings.append(f"--workers {opts['workers']}: under {MIN_WORKER_PAIRS} worker pairs every "
                                        "timing verdict is inconclusive (the statistics' unit is the worker pair)")
        harness = (f"base's ({self.base.label})" if harness_root(self.base) == self.base.folder
                   else f"this gate's ({GATE_ROOT})")
        compiles = (f"; cold compiles: {opts['compiles']} pairs a worker pair, at a {opts['compile_threshold']:.0%} "
                    "threshold" if opts["compile_threshold"] else "")
        self.result.method = (f"same job, {opts['workers']} workers a side, blocks of about {opts['block_time']:g} s "
                              f"in random order; base: {self.base.label}; head: {self.head.label}; {versions}; "
                              f"timing harness and checks: {harness}{compiles}")
        return self.result

    def _group(self, devices: int) -> tuple[str, list[str]]:
        """Measure the benchmarks of one device group: (the sides' versions in words, the
        benchmarks the workers left to another group)."""
        workers: dict[str, list[Worker]] = {}
        ready: dict[str, list[dict]] = {}
        finished, timeout = False, self.options["worker_timeout"]
        with tempfile.TemporaryDirectory(prefix="jaxbench-ab-") as hand_over:
            try:
                _progress(f"starting {self.options['workers']} workers a side with {devices} device(s); each "
                          "builds, compiles and checks every benchmark of its group")
                # Each side's first worker starts alone and hands its references and initial model
                # states to the side's others (bench.ab.worker --hand-over), which start after it.
                arguments = {}
                for side in (self.base, self.head):
                    Path(hand_over, side.name).mkdir()
                    arguments[side.name] = [*worker_arguments(self.selection, devices),
                                            "--hand-over", str(Path(hand_over, side.name))]
                    saving = (["--save-hlo", str(Path(self.options["save_hlo"], side.name))]
                              if self.options["save_hlo"] else [])
                    workers[side.name] = [Worker(side, 0, arguments[side.name] + saving, harness_root(self.base))]
                for name, group in workers.items():  # base first: its benchmarks are known if head ends
                    ready[name] = [group[0].receive(timeout)]
                for side in (self.base, self.head):
                    workers[side.name] += [Worker(side, i, arguments[side.name], harness_root(self.base))
                                           for i in range(1, self.options["workers"])]
                for name, group in workers.items():
                    ready[name] += [worker.receive(timeout) for worker in group[1:]]
                # One family for Bonferroni: this group's benchmarks, those measured before it and
                # those its workers leave to the multi-device group after it.
                later = len(ready["base"][0]["elsewhere"]) if devices == 1 else 0
                benchmarks = self._common(ready)
                self._measure(workers, benchmarks, later)
                if self.options["compile_threshold"]:
                    self._measure_compiles(workers, ready, benchmarks, later)
                finished = True
                return self._versions(ready), ready["head"][0]["elsewhere"] + ready["base"][0]["elsewhere"]
            except WorkerError as error:
                if error.side != "head" or "base" not in ready:
                    raise  # without base's figures there is nothing to compare against
                self._head_ended(ready["base"][0], str(error))
                finished = True
                base = ready["base"][0]
                return f"base JAX {base['jax_version']}, Python {base['python_version']}", base["elsewhere"]
            finally:
                for group in workers.values():
                    for worker in group:
                        worker.stop(graceful=finished)

    def _head_ended(self, base_ready: dict, why: str) -> None:
        """A head worker crashed, hung or could not start: every benchmark of the group that base
        measured and that has no verdict yet is a `regression`, with why."""
        decided = {row["benchmark"] for row in self.result.rows}
        for case, entry in base_ready["ready"].items():
            if entry["status"] == "ready" and case not in decided:
                self.result.add(case, None, [], failure=why)

    @staticmethod
    def _versions(ready: dict) -> str:
        base, head = (ready[name][0] for name in ("base", "head"))
        if (base["jax_version"], base["python_version"]) == (head["jax_version"], head["python_version"]):
            return f"JAX {base['jax_version']}, Python {base['python_version']}"
        return (f"base JAX {base['jax_version']} on Python {base['python_version']}, "
                f"head JAX {head['jax_version']} on Python {head['python_version']}")

    def _common(self, ready: dict) -> list[Benchmark]:
        """The benchmarks ready on both sides, with their exact changes; the rest recorded."""
        base, head = ready["base"][0]["ready"], ready["head"][0]["ready"]
        self.result.only_base += [case for case in base if case not in head]
        self.result.only_head += [case for case in head if case not in base]
        benchmarks = []
        for case in (case for case in head if case in base):
            b, h = base[case], head[case]
            if b["status"] == "ready" and h["status"] != "ready":  # base measured it; head cannot
                self.result.add(case, None, [], failure=f"head {h['status']}: {h['message']}")
            elif h["status"] == "failed" and b["status"] != "failed":
                self.result.add(case, None, [], failure=f"head {h['message']}")
            elif b["status"] != "ready" or h["status"] != "ready":
                why = h.get("message") or b.get("message")
                self.result.warnings.append(f"{case} not compared: base {b['status']}, head {h['status']} ({why})")
            else:
                self._warn_if_workers_disagree(ready, case)
                benchmarks.append(Benchmark(case, rounds=1, changes=exact_changes(b["exact"], h["exact"]),
                                            program=program_diff(b["exact"].get("program"), h["exact"].get("program"))))
        return benchmarks

    def _calibrate(self, workers: dict[str, list[Worker]], bench: Benchmark) -> None:
        """Size `bench`'s blocks from a few rounds on each side's first worker, now that every
        worker is ready and idle (while they were starting together their steps ran slower)."""
        step_s = max(float(np.median(workers[side][0].block(bench.case, CALIBRATION_ROUNDS,
                                                            self.options["worker_timeout"])))
                     for side in ("base", "head"))
        bench.rounds = max(1, math.ceil(SLICE_S / step_s))
        bench.slices = max(1, round(self.options["block_time"] / (bench.rounds * step_s)))

    def _warn_if_workers_disagree(self, ready: dict, case: str) -> None:
        for name, messages in ready.items():
            figures = {json.dumps(message["ready"][case]["exact"], sort_keys=True) for message in messages}
            if len(figures) > 1:
                self.result.warnings.append(
                    f"{case}: the {name} workers' exact figures differ ({' vs '.join(figures)})")

    def _measure(self, workers: dict[str, list[Worker]], benchmarks: list[Benchmark], later: int = 0) -> None:
        """Batches of block pairs, in random order, until every benchmark is decided, has
        `max_pairs` pairs, or the run has taken `max_time`; then each one's verdict.

        A benchmark is looked at after batches 2, 4, 8, ... and the last one `max_pairs` allows
        (`look_batches`), and stops at the first look that decides it, so each look gets its
        share of the false-alarm rate: Bonferroni over the benchmarks and over the looks. Without
        it, a noisy benchmark of unchanged code, looked at after every batch, sooner or later
        crosses into `regression`."""
        opts = self.options
        looks = look_batches(opts["max_pairs"], opts["workers"])
        alpha = family_alpha(len(benchmarks) + len(self.result.rows) + later) / len(looks)
        for bench in benchmarks:
            self._calibrate(workers, bench)
        undecided, batch = list(benchmarks), 0
        while undecided and time.monotonic() - self.started < opts["max_time"]:
            batch += 1
            for index in self.rng.permutation(len(undecided)):
                self._batch(workers, undecided[index])
            if batch in looks:
                undecided = [bench for bench in undecided if batch < looks[-1] and (
                    len(bench.ratios) < MIN_MEASUREMENTS or self._verdict(bench, alpha).verdict == "inconclusive")]
            _progress(f"batch {batch}: {len(benchmarks) - len(undecided)} of {len(benchmarks)} benchmarks decided "
                      f"({time.monotonic() - self.started:.0f} s)")
        for bench in benchmarks:
            self.result.add(bench.case, self._verdict(bench, alpha), bench.changes, program=bench.program,
                            measurements={"ratios": bench.ratios, "worker_pairs": bench.clusters,
                                          "rounds_per_slice": bench.rounds, "slices_per_block": bench.slices})

    def _measure_compiles(self, workers: dict[str, list[Worker]], ready: dict, benchmarks: list[Benchmark],
                          later: int = 0) -> None:
        """Each compiled benchmark's cold compile time, paired as its steps are: in every worker pair,
        `compiles` pairs of one cold compilation a side, which side first at random, each pair one
        ratio; its verdict at `compile_threshold`, a row of its own (`COMPILE_ROW`). Only workers
        whose harness says it takes the request (`compile_times`) are asked."""
        if not all(group[0].ready.get("compile_times") for group in workers.values()):
            self.result.warnings.append("cold compile times not measured: the timing harness predates them")
            return
        compiled = [bench for bench in benchmarks
                    if all(ready[side][0]["ready"][bench.case].get("compiled") for side in ready)]
        opts, timeout = self.options, self.options["worker_timeout"]
        done = sum(row["kind"] == "compile" for row in self.result.rows)
        alpha = family_alpha(len(compiled) + done + later)
        for bench in compiled:
            ratios, clusters = [], []
            for index in self.rng.permutation(opts["workers"]):
                for _ in range(opts["compiles"]):
                    seconds = {}
                    for side in self.rng.permutation(["base", "head"]):
                        seconds[str(side)] = workers[str(side)][index].compiles(bench.case, 1, timeout)[0]
                    ratios.append(seconds["head"] / seconds["base"])
                    clusters.append(int(index))
            self.result.add(bench.case + COMPILE_ROW, paired_verdict(ratios, clusters, opts["compile_threshold"],
                                                                     alpha), [], kind="compile",
                            measurements={"ratios": ratios, "worker_pairs": clusters})
            _progress(f"cold compiles of {bench.case}: {self.result.rows[-1]['verdict']}")

    def _verdict(self, bench: Benchmark, alpha: float):
        return paired_verdict(bench.ratios, bench.clusters, self.options["threshold"], alpha)

    def _batch(self, workers: dict[str, list[Worker]], bench: Benchmark) -> None:
        """One block pair in each pair of workers, the pairs in random order. A block pair is
        `slices` slices of rounds on each side, alternating (which side first, at random), so
        that the two sides' rounds interleave within a few tens of milliseconds: a shared
        machine's speed moves on the scale of a second (docs/regressions.md, "Why slices"). Its ratio:
        the median of head's rounds over base's."""
        timeout = self.options["worker_timeout"]
        for index in self.rng.permutation(self.options["workers"]):
            rounds = {"base": [], "head": []}
            for _ in range(bench.slices):
                for side in self.rng.permutation(["base", "head"]):
                    rounds[str(side)] += workers[str(side)][index].block(bench.case, bench.rounds, timeout)
            bench.ratios.append(float(np.median(rounds["head"]) / np.median(rounds["base"])))
            bench.clusters.append(int(index))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_ab(selection: Selection, options: dict, base: str | None = None, head: str | None = None,
           base_python: str | None = None, head_python: str | None = None, folder: Path | None = None,
           seed: int | None = None) -> GateResult:
    """The A/B comparison the command line asks for (`ABError` with one line for bad input). A
    SIGTERM (a cancelled CI job) ends it as Ctrl-C does: workers stopped, worktrees removed."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    with sides(base, head, base_python, head_python, Path(folder or Path.cwd())) as (base_side, head_side):
        return ABRun(base_side, head_side, selection, options, seed).run()
