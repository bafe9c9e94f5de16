"""Running the engine (``python -m cardiacquan quantify``) in a child process, and the job around it.

The engine runs a network on every frame for up to minutes: in its own process Slicer stays responsive, a
crash cannot take Slicer down, and Cancel can end the whole process tree.  The two sides exchange
files in a temporary folder (formats and the stderr progress protocol: ``cardiacquan.contract``).
A QuantifyJob is polled from the GUI timer or waited on from scripts; when the engine succeeds it
calls the import function it was given (the Logic's), so this file knows nothing of the outputs.
"""
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from cardiacquan.contract import (
    PROGRESS_PREFIX,
    parse_error,
    parse_progress,
    save_cine_npz,
    save_results_npz,
)

from CardiacQuanLib.application import applicationHome, inSlicerApplication, processEvents, temporaryBase
from CardiacQuanLib.errors import CardiacQuanRunError, oneLine

#: name of the engine package in the module folder (import name = pip name = CLI)
ENGINE_MODULE = "cardiacquan"
#: exchange files in the job's folder
CINE_FILE = "cine.npz"
LABELS_FILE = "labels.npz"
OUTPUT_FOLDER = "out"


class EngineProcess:
    """One engine run in a child process: streams stderr progress lines, can kill its process tree.

    Nothing here blocks unless asked to (cancel(wait=True)): the GUI polls finished() from a timer.
    """

    #: seconds between asking the engine to stop (SIGTERM) and killing its process tree
    GRACE_SECONDS = 3.0
    #: seconds the pipe readers get after the engine exited
    READER_GRACE_SECONDS = 5.0

    def __init__(self, command, env=None, cwd=None):
        self.command = list(command)
        self.env = env
        self.cwd = cwd
        self.proc = None
        self.returncode = None
        self.cancelled = False
        self.lastErrorLine = None
        self.stderrTail = []
        self._queue = queue.Queue()
        self._threads = []
        self._cancelTime = None
        self._exitTime = None

    def start(self):
        kwargs = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      env=self.env, cwd=self.cwd, bufsize=1, text=True, encoding="utf-8", errors="replace")
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # own process group: cancel ends the whole tree
        try:
            self.proc = subprocess.Popen(self.command, **kwargs)
        except OSError as e:
            raise CardiacQuanRunError(f"could not start the engine ({self.command[0]}): {e}") from None
        for stream, name in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            t = threading.Thread(target=self._reader, args=(stream, name), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _reader(self, stream, name):
        try:
            for line in iter(stream.readline, ""):
                self._queue.put((name, line.rstrip("\r\n")))
        except (OSError, ValueError):
            pass
        finally:
            self._queue.put((name, None))

    def events(self):
        """Drain the lines read so far: list of (stream, line)."""
        out = []
        while True:
            try:
                name, line = self._queue.get_nowait()
            except queue.Empty:
                return out
            if line is None:
                continue
            if name == "stderr":
                err = parse_error(line)
                if err is not None:
                    self.lastErrorLine = err
                if line.strip() and not line.startswith(PROGRESS_PREFIX):
                    self.stderrTail = (self.stderrTail + [line])[-20:]
            out.append((name, line))

    def finished(self):
        """True once the engine has exited and its output is read. Never waits: the GUI timer calls it.

        After a cancel, a process still there GRACE_SECONDS later is killed; after the exit, the
        readers get READER_GRACE_SECONDS to empty the pipes (a straggler that inherited them may
        keep them open)."""
        if self.proc is None:
            return False
        if self.returncode is None:
            rc = self.proc.poll()
            now = time.monotonic()
            if rc is None:
                if self.cancelled and now - self._cancelTime > self.GRACE_SECONDS:
                    self._terminate(force=True)
                return False
            if self._exitTime is None:
                self._exitTime = now
                if self.cancelled:
                    self._killGroup(signal.SIGKILL if os.name != "nt" else None)  # stragglers of the leader
            if any(t.is_alive() for t in self._threads) and now - self._exitTime < self.READER_GRACE_SECONDS:
                return False
            self.returncode = rc
        return True

    def cancel(self, wait=True, force=False):
        """End the engine and every process it started.

        wait=False (the GUI thread): ask the engine to stop and return at once; finished() ends it
        GRACE_SECONDS later if it is still there.  wait=True (scripts): return once it has ended.
        force: kill at once instead of asking (the module is being unloaded)."""
        self.cancelled = True
        if self._cancelTime is None:
            self._cancelTime = time.monotonic()
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            self._killGroup(signal.SIGKILL if os.name != "nt" else None)  # stragglers of a finished leader
            return
        self._terminate(force)
        if not wait:
            return
        deadline = time.monotonic() + self.GRACE_SECONDS
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None:
            self._terminate(force=True)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def _terminate(self, force=False):
        """Ask the process tree to stop (SIGTERM), or kill it (force); returns at once."""
        if os.name == "nt":   # taskkill ends the tree; not waited for
            subprocess.Popen(["taskkill", "/F", "/T", "/PID", str(self.proc.pid)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        else:
            self._killGroup(signal.SIGKILL if force else signal.SIGTERM)

    def _killGroup(self, sig):
        if os.name == "nt" or self.proc is None or sig is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def errorMessage(self):
        if self.lastErrorLine:
            return oneLine(self.lastErrorLine)
        tail = [line for line in self.stderrTail if line.strip()]
        if tail:
            return oneLine(f"the engine stopped (exit code {self.returncode}): {tail[-1]}")
        return f"the engine stopped with exit code {self.returncode}"


def enginePython(preferred=None):
    """The engine's Python: `preferred`, Slicer's own (PythonSlicer) inside Slicer, this interpreter elsewhere."""
    if preferred:
        return preferred
    if inSlicerApplication():
        exe = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
        candidates = [shutil.which("PythonSlicer"), os.path.join(os.path.dirname(sys.executable), exe)]
        home = applicationHome()
        if home:
            candidates.append(os.path.join(home, "bin", exe))
        for c in candidates:
            if c and os.path.isfile(c):
                return c
    return sys.executable


def startEngine(cine, slicesArgument, labels=None, python=None, engineModule=ENGINE_MODULE, pythonPaths=(),
                extraArguments=(), temporaryDirectory=None):
    """Write the exchange files of `cine` (a CineInput) and start the engine on them.

    Returns (work folder, EngineProcess); the engine writes its outputs to <work folder>/out.
    `pythonPaths` go in front of PYTHONPATH (the folder holding the engine package).
    """
    workDir = tempfile.mkdtemp(prefix="CardiacQuan-", dir=temporaryBase(temporaryDirectory))
    try:
        inputPath = os.path.join(workDir, CINE_FILE)
        spacing, origins, direction, thickness = cine.engineGeometry()
        save_cine_npz(inputPath, cine.image, spacing, origins, direction,
                      cine.timesMs if cine.timesKnown else None, slice_thickness=thickness, source=cine.name)
        outDir = os.path.join(workDir, OUTPUT_FOLDER)
        # --no-figures: the module draws its own table and chart; the PNGs would cost ~0.5 s per run
        command = [enginePython(python), "-m", engineModule, "quantify", inputPath, "-o", outDir,
                   "--slices", slicesArgument, "--no-figures"]
        if labels is not None:
            labelsPath = os.path.join(workDir, LABELS_FILE)
            save_results_npz(labelsPath, labels)
            command += ["--labels", labelsPath]
        command += list(extraArguments)
        env = os.environ.copy()
        env["PYTHONPATH"] = os.pathsep.join(list(pythonPaths) + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        logging.info("CardiacQuan: running %s", " ".join(command))
        process = EngineProcess(command, env=env, cwd=workDir).start()
    except Exception:
        shutil.rmtree(workDir, ignore_errors=True)
        raise
    return workDir, process


class QuantifyJob:
    """An engine run and the import of its results; poll() from the GUI timer, wait() from scripts.

    importResults(job) builds the outputs from job.outputDirectory and returns them; it must leave
    the scene unchanged when it raises.
    """

    def __init__(self, cine, slices, workDir, process, labelsGiven, keepTemporaryFiles, importResults,
                 progressCallback=None, logCallback=None, finishedCallback=None, showResults=True):
        self.importResults = importResults
        self.showResults = showResults
        self.cine = cine
        self.slices = slices
        self.workDir = workDir
        self.outputDirectory = os.path.join(workDir, OUTPUT_FOLDER)
        self.process = process
        self.labelsGiven = labelsGiven
        self.keepTemporaryFiles = keepTemporaryFiles
        self.progressCallback = progressCallback
        self.logCallback = logCallback
        self.finishedCallback = finishedCallback
        self.state = "running"
        self.errorMessage = ""
        self.outputs = None
        self.progress = (0, 0, "")
        self.startTime = time.time()
        self.elapsedSeconds = 0.0

    @property
    def done(self):
        return self.state in ("succeeded", "failed", "cancelled")

    def cancel(self, wait=True, force=False):
        """Stop the engine; the scene stays as it was.  wait=False returns at once (the GUI: its
        timer keeps polling until the job is 'cancelled'); wait=True returns when it is."""
        if self.done:
            return
        self.process.cancel(wait=wait, force=force)
        while self.poll() and wait:
            time.sleep(0.05)

    def fail(self, message):
        """End the job as failed at once (the GUI, when handling its progress raised): the engine is
        killed, nothing is imported, and the message is reported once."""
        if self.done:
            return
        self.process.cancel(wait=False, force=True)
        self.state, self.errorMessage = "failed", message
        self._finish()

    def poll(self):
        """Handle what the engine said since the last call; import the results when it ends.

        Returns True while the job is running.  Never waits for the engine.
        """
        if self.done:
            return False
        for stream, line in self.process.events():
            p = parse_progress(line) if stream == "stderr" else None
            if p is not None:
                self.progress = p
                if self.progressCallback:
                    self.progressCallback(*p)
            elif self.logCallback:
                self.logCallback(line)
        if not self.process.finished():
            return True
        try:
            if self.process.cancelled:
                self.state, self.errorMessage = "cancelled", "cancelled by the user"
            elif self.process.returncode != 0:
                self.state, self.errorMessage = "failed", self.process.errorMessage()
            else:
                try:
                    self.outputs = self.importResults(self)
                    self.state = "succeeded"
                except Exception as e:  # import failed: the scene was rolled back
                    logging.debug("CardiacQuan import failed", exc_info=True)
                    self.state, self.errorMessage = "failed", oneLine(e)
        finally:
            if not self.done:   # the import raised something unexpected
                self.state, self.errorMessage = "failed", self.errorMessage or "the results could not be imported"
            self._finish()
        return False

    def _finish(self):
        """Elapsed time, the work folder, the log line and the finished callback: once per job."""
        self.elapsedSeconds = time.time() - self.startTime
        if self.keepTemporaryFiles:
            if self.outputs is not None:
                self.outputs.outputDirectory = self.outputDirectory
        else:
            shutil.rmtree(self.workDir, ignore_errors=True)
        if self.state != "succeeded":
            logging.warning("CardiacQuan: %s", self.errorMessage)
        if self.finishedCallback:
            self.finishedCallback(self)

    def wait(self, timeout=None):
        """Block until the job ends (keeps Slicer's GUI responsive). Returns self."""
        deadline = None if timeout is None else time.time() + timeout
        while self.poll():
            if deadline is not None and time.time() > deadline:
                self.cancel(wait=True)
                break
            processEvents()
            time.sleep(0.05)
        return self

    def result(self):
        """The outputs of a finished job, or CardiacQuanRunError saying why there are none."""
        if self.state != "succeeded":
            raise CardiacQuanRunError(self.errorMessage or self.state)
        return self.outputs
