#!/usr/bin/env python3
"""Quantify the sample cine through the module's Logic in a clean, Slicer-5.12-like Python.

    python3 scripts/check_clean_slicer_env.py              # fresh venv in a temporary folder, removed after
    python3 scripts/check_clean_slicer_env.py --keep       # keep the venv (its path is printed)
    python3 scripts/check_clean_slicer_env.py --venv DIR   # use/create the venv DIR (kept; reruns skip creating it)

What it does (issue 13, "a clean Slicer-5.12-like Python quantifies the sample cine through the Logic"):

1. creates a fresh venv with Python 3.12 (Slicer 5.10/5.12 run 3.12.10): $PYTHON312, else
   ``python3.12``, else pyenv's 3.12;
2. installs only what Slicer 5.12's Python has that the module touches -- ``slicer-core`` and ``vtk``
   at the versions of requirements-dev.txt, numpy and SimpleITK at the versions of requirements.txt --
   plus ``-r CardiacQuan/Resources/requirements.txt`` (the module's engine requirements), in one pip
   command so nothing pinned is upgraded; nothing else (no TensorFlow, pynrrd, scikit-image, h5py,
   highdicom);
3. runs this file again in that venv (``--inside``): loads the module as the tests do (Slicer's real
   Python layer from ../shared/slicer-python over slicer-core, only the compiled GUI stood in:
   Testing/slicer_stubs.py), reads the sample cine with Slicer's own reader (the Sequences logic's
   AddSequence -> vtkMRMLVolumeSequenceStorageNode, then a browser, as the Sequences reader used by
   Sample Data does), runs ``CardiacQuanLogic.quantify`` with the engine child process on the same
   venv's python, and checks the outputs (segmentation sequence, indices table, ED 18 / ES 7,
   plausible EF, no traceback, no package outside the clean set imported by the engine);
4. prints the venv's packages (pip list) and their size on disk.

Exit status 0 when every check passes.  Needs PyPI (or a pip configuration that reaches it) the first time.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_REQUIREMENTS = os.path.join(REPO, "CardiacQuan", "Resources", "requirements.txt")
SAMPLE = os.path.join(REPO, "CardiacQuan", "Resources", "SampleData", "SunnybrookSCHFI1-cine.seq.nrrd")
#: (package, the requirements file whose pin it takes)
SLICER_SHIPS = (("slicer-core", "requirements-dev.txt"), ("vtk", "requirements-dev.txt"),
                ("numpy", "requirements.txt"), ("SimpleITK", "requirements.txt"))
#: must not be in the clean venv (training, or outputs the module never asks for)
FORBIDDEN = ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "h5py", "pynrrd", "scikit-image",
             "highdicom", "torch")
#: expected on the sample cine (README, cardiacquan demo)
EXPECTED_ED, EXPECTED_ES = 18, 7
#: what the engine's quantify path must not import (Testing/test_architecture.py: NOT_ON_THE_MODULE_PATH)
ENGINE_MUST_NOT_IMPORT = ("tensorflow", "keras", "tf2onnx", "onnx", "skimage", "nrrd", "highdicom", "h5py")
#: a line of python -X importtime (PYTHONPROFILEIMPORTTIME): "import time: self | cumulative | name"
IMPORT_TIME = re.compile(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)")
EF_RANGE = (5.0, 80.0)   # the sample is a heart failure case: EF ~21 %


# --------------------------------------------------------------------------------------
# outside: the venv
# --------------------------------------------------------------------------------------
def pinned(package, requirements_file):
    """'package==version' as pinned in a requirements file of the repository."""
    with open(os.path.join(REPO, requirements_file), encoding="utf-8") as f:
        for line in f:
            m = re.match(rf"\s*{re.escape(package)}\s*==\s*([^\s;#]+)", line, re.IGNORECASE)
            if m:
                return f"{package}=={m.group(1)}"
    raise SystemExit(f"{package} is not pinned in {requirements_file}")


def python312():
    """A Python 3.12 interpreter."""
    candidates = [os.environ.get("PYTHON312"), shutil.which("python3.12")]
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        versions = os.path.join(root, "versions")
        candidates += [os.path.join(versions, v, "bin", "python3.12") for v in sorted(os.listdir(versions))
                       if v.startswith("3.12")]
    except (OSError, subprocess.CalledProcessError):
        pass
    for c in candidates:
        if not c:
            continue
        r = subprocess.run([c, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.startswith("3.12."):
            return c, r.stdout.strip()
    raise SystemExit("no Python 3.12 found (set PYTHON312 to one)")


def run(cmd, **kwargs):
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def folder_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def outside(args):
    t0 = time.time()
    base = args.venv
    temporary = None
    if base is None:
        temporary = tempfile.mkdtemp(prefix="cq-clean-slicer-env-")
        base = os.path.join(temporary, "venv")
    py = os.path.join(base, "bin", "python")
    specs = [pinned(p, f) for p, f in SLICER_SHIPS]
    try:
        if not os.path.isfile(py):
            interpreter, version = python312()
            print(f"== creating a fresh venv with Python {version} ({interpreter}) in {base}", flush=True)
            run([interpreter, "-m", "venv", base])
            print("== installing what Slicer 5.12's Python ships (pinned) and the module's requirements", flush=True)
            run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *specs,
                 "-r", MODULE_REQUIREMENTS])
        else:
            print(f"== reusing the venv {base}", flush=True)
        print("== quantifying the sample cine through the Logic in that venv", flush=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        inside_rc = subprocess.run([py, os.path.abspath(__file__), "--inside"], env=env).returncode
        print("\n== packages of the clean venv (pip list)", flush=True)
        listing = subprocess.run([py, "-m", "pip", "list", "--disable-pip-version-check", "--format", "json"],
                                 capture_output=True, text=True, check=True).stdout
        packages = json.loads(listing)
        for p in packages:
            print(f"  {p['name']:<28} {p['version']}")
        site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        print(f"  {len(packages)} packages; site-packages {folder_size(site) / 2**20:.0f} MiB, "
              f"whole venv {folder_size(base) / 2**20:.0f} MiB")
        sizes = sorted(((folder_size(os.path.join(site, d)), d) for d in os.listdir(site)
                        if os.path.isdir(os.path.join(site, d)) and not d.endswith((".dist-info", "__pycache__"))),
                       reverse=True)
        print("  largest: " + ", ".join(f"{d} {n / 2**20:.0f} MiB" for n, d in sizes[:6]))
        names = {p["name"].lower() for p in packages}
        forbidden = sorted(names & set(FORBIDDEN))
        failures = []
        if forbidden:
            failures.append(f"the clean venv has packages it must not have: {', '.join(forbidden)}")
        versions = {p["name"].lower(): p["version"] for p in packages}
        for spec in specs:
            name, version = spec.split("==")
            if versions.get(name.lower()) != version:
                failures.append(f"{name} is {versions.get(name.lower())}, not {version} as pinned")
        if inside_rc != 0:
            failures.append(f"the check in the venv failed (exit code {inside_rc})")
        print(f"\n== {'FAILED: ' + '; '.join(failures) if failures else 'OK'} ({time.time() - t0:.0f} s)")
        return 1 if failures else 0
    finally:
        if temporary and not args.keep:
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary:
            print(f"(venv kept: {base})")


# --------------------------------------------------------------------------------------
# inside the clean venv: the module's Logic on the sample cine
# --------------------------------------------------------------------------------------
def inside():
    import importlib.util
    import logging

    failures = []

    def check(ok, what):
        print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
        if not ok:
            failures.append(what)
        return ok

    print(f"  python {sys.version.split()[0]} at {sys.executable} (venv: {sys.prefix != sys.base_prefix})")
    check(sys.prefix != sys.base_prefix and sys.version_info[:2] == (3, 12), "running in a Python 3.12 venv")
    sys.path.insert(0, os.path.join(REPO, "Testing"))
    import slicer_scene as ss

    try:
        module = ss.load_module()
    except ss.FrameworkMissing as e:
        check(False, f"Slicer's Python layer: {e}")
        return 1
    import slicer

    check(getattr(slicer, "app", None) is None, "the Logic runs as in a batch script (no slicer.app)")

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logging.getLogger().addHandler(Keep())
    logging.getLogger().setLevel(logging.INFO)

    S = ss.SlicerScene()
    try:
        # Slicer's Sequences reader (qSlicerSequencesReader, what Sample Data uses for "SequenceFile"):
        # the logic's AddSequence reads the file with vtkMRMLVolumeSequenceStorageNode, then a browser
        # plays the sequence and its proxy volume is what the user sees
        sequence = S.logics["Sequences"].AddSequence(SAMPLE)
        if not check(sequence is not None and sequence.GetNumberOfDataNodes() > 0,
                     f"Slicer's reader loaded {os.path.basename(SAMPLE)} as a sequence"):
            return 1
        storage = sequence.GetStorageNode()
        check(storage is not None and storage.IsA("vtkMRMLVolumeSequenceStorageNode"),
              f"read by {storage.GetClassName() if storage else None}")
        browser = S.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", sequence.GetName() + " browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        proxy = browser.GetProxyNode(sequence)
        proxy.CreateDefaultDisplayNodes()
        dims = proxy.GetImageData().GetDimensions()
        print(f"  cine: {sequence.GetNumberOfDataNodes()} frames of {dims}, index {sequence.GetIndexName()} "
              f"({sequence.GetIndexUnit()}), proxy {proxy.GetClassName()} '{proxy.GetName()}'")

        logic = module.CardiacQuanLogic(scene=S.scene, appLogic=S.appLogic)
        logic.pythonExecutable = sys.executable   # the engine's python: this clean venv's
        engineLines = []
        shown = set()

        def progress(done, total, message):   # a line per quarter of the run
            quarter = 4 * done // total if total else 0
            if quarter not in shown:
                shown.add(quarter)
                print(f"  engine: {message} ({done}/{total})", flush=True)
        os.environ["PYTHONPROFILEIMPORTTIME"] = "1"   # the engine (it inherits the environment) lists its imports
        t0 = time.time()
        try:
            out = logic.quantify(proxy, slices="all", logCallback=engineLines.append, progressCallback=progress)
            error = None
        except Exception as e:  # noqa: BLE001  (reported below)
            import traceback

            out, error = None, e
            traceback.print_exc()
        print(f"  engine finished in {time.time() - t0:.0f} s")
        os.environ.pop("PYTHONPROFILEIMPORTTIME")
        # -X importtime also lists the imports that failed (optional plugins a package tries)
        tried = sorted({m.group(1).strip().split(".")[0] for m in map(IMPORT_TIME.match, engineLines) if m}
                       - set(sys.stdlib_module_names) - {"sitecustomize", "usercustomize"})
        engineImports = [m for m in tried if importlib.util.find_spec(m) is not None]
        absent = [m for m in tried if m not in engineImports]
        engineLines = [line for line in engineLines if not IMPORT_TIME.match(line)]
        commands = [r.getMessage() for r in records if r.getMessage().startswith("CardiacQuan: running ")]
        engineLog = "\n".join(engineLines + [r.getMessage() for r in records if r.levelno >= logging.WARNING])
        if commands:
            print("  " + commands[-1])
        check(bool(commands) and commands[-1].split()[2] == sys.executable,
              "the engine child process ran on this venv's python")
        if not check(error is None, f"quantify succeeded{'' if error is None else f': {error}'}"):
            if engineLog:
                print("  engine log:\n    " + engineLog.replace("\n", "\n    "))
            return 1
        print("  imported by the engine process: " + ", ".join(m for m in engineImports if not m.startswith("_")))
        print("  tried by it, absent here (optional plugins of its packages): "
              + (", ".join(m for m in absent if not m.startswith("_")) or "none"))
        unexpected = sorted(set(tried) & set(ENGINE_MUST_NOT_IMPORT))
        check(not unexpected, f"the engine tried none of {', '.join(ENGINE_MUST_NOT_IMPORT)}"
                              + (f" (it tried {', '.join(unexpected)})" if unexpected else ""))
        check("Traceback" not in engineLog, "no traceback in the engine's output or the log")
        seg = out.segmentationSequence
        check(seg is not None and seg.GetNumberOfDataNodes() == sequence.GetNumberOfDataNodes(),
              f"segmentation sequence with one item per frame ({seg.GetNumberOfDataNodes() if seg else 0})")
        segments = out.segmentation.GetSegmentation().GetNumberOfSegments() if out.segmentation else 0
        check(segments > 0, f"proxy segmentation with {segments} segments")
        rows = out.indicesTable.GetNumberOfRows() if out.indicesTable else 0
        check(rows > 0, f"indices table with {rows} rows")
        summary = out.summary
        ed, es = summary.get("ed_frame"), summary.get("es_frame")
        check((ed, es) == (EXPECTED_ED, EXPECTED_ES), f"ED frame {ed}, ES frame {es} (expected {EXPECTED_ED}, "
                                                        f"{EXPECTED_ES})")
        vol = summary.get("volumes") or {}
        ef = vol.get("ef_percent")
        check(ef is not None and EF_RANGE[0] <= ef <= EF_RANGE[1], f"EF {ef} % (plausible: {EF_RANGE[0]:g}-"
                                                                     f"{EF_RANGE[1]:g} %)")
        print(f"  EDV {vol.get('edv_ml')} mL, ESV {vol.get('esv_ml')} mL, LV mass (ED) {vol.get('lv_mass_ed_g')} g; "
              f"segmented by {summary.get('segmented_by')}; {len(out.warnings)} warnings")
        for w in out.warnings:
            print(f"    warning: {w}")
        check(out.chart is not None and out.bullseye is not None, "chart and AHA bull's-eye created")
        # the packages this process imported beyond the standard library (the engine's are not here)
        stdlib = set(sys.stdlib_module_names)
        imported = sorted({m.split(".")[0] for m in list(sys.modules)} - stdlib)
        print("  imported in the Slicer-side process: " + ", ".join(m for m in imported if not m.startswith("_")))
    finally:
        S.close()
    print(f"  {'all checks passed' if not failures else f'{len(failures)} check(s) failed'}")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", help="use this venv folder (created when absent, kept)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary venv")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    return inside() if args.inside else outside(args)


if __name__ == "__main__":
    sys.exit(main())
