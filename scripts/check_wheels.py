"""Check that every runtime requirement of the Slicer module has a wheel for Slicer's Python.

Slicer 5.10 and 5.12 run CPython 3.12 (3.12.10).  For each requirement of
CardiacQuan/Resources/requirements.txt and each platform Slicer ships for (Linux x86-64, Windows
x86-64, macOS arm64), this asks pip for the newest matching binary wheel without its dependencies:

    pip download --only-binary=:all: --python-version 3.12 --platform TAG ... --no-deps REQ

into a temporary folder (deleted afterwards), and prints the wheel pip chose and its size.  A
requirement without a wheel would make Slicer build it from source on first use (or fail): the
script then exits with status 1.  Needs network access to the package index (PyPI by default;
pip's own configuration applies).

    python scripts/check_wheels.py [--python-version 3.12] [--requirements FILE]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(REPO, "CardiacQuan", "Resources", "requirements.txt")
#: platform name -> pip --platform tags (Slicer's Linux build needs glibc 2.28; macOS 11 on arm64)
PLATFORMS = {
    "Linux x86-64": ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
                     "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64",
                     "manylinux1_x86_64"],
    "Windows x86-64": ["win_amd64"],
    "macOS arm64": ["macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_13_0_arm64", "macosx_14_0_arm64",
                    "macosx_11_0_universal2", "macosx_10_9_universal2"],
}


def requirements(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                out.append(line)
    return out


def download(req, tags, pythonVersion, folder):
    """(wheel file name, size in bytes) pip picks for `req` on `tags`, or (None, pip's last error line)."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--python-version", pythonVersion, "--implementation", "cp",
           "-d", folder, req]
    for tag in tags:
        cmd += ["--platform", tag]
    before = set(os.listdir(folder))
    r = subprocess.run(cmd, capture_output=True, text=True)
    new = sorted(set(os.listdir(folder)) - before)
    wheels = [f for f in new if f.endswith(".whl")]
    if r.returncode != 0 or not wheels:
        lines = [line for line in (r.stderr or r.stdout).splitlines() if line.strip()]
        return None, lines[-1] if lines else f"pip exited with {r.returncode}"
    return wheels[0], os.path.getsize(os.path.join(folder, wheels[0]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python-version", default="3.12", help="Slicer's Python (5.10 and 5.12: 3.12)")
    ap.add_argument("--requirements", default=REQUIREMENTS)
    a = ap.parse_args(argv)
    reqs = requirements(a.requirements)
    print(f"Wheels for CPython {a.python_version} of {os.path.relpath(a.requirements, REPO)}: {', '.join(reqs)}")
    failures = 0
    with tempfile.TemporaryDirectory(prefix="cq-wheels-") as tmp:
        for platform, tags in PLATFORMS.items():
            folder = os.path.join(tmp, re.sub(r"\W+", "_", platform))
            os.makedirs(folder)
            for req in reqs:
                wheel, info = download(req, tags, a.python_version, folder)
                if wheel is None:
                    failures += 1
                    print(f"  MISSING  {platform:15s} {req:22s} {info}")
                else:
                    print(f"  ok       {platform:15s} {req:22s} {wheel} ({info / 1e6:.1f} MB)")
    print("all requirements have wheels on every platform" if not failures
          else f"{failures} requirement/platform pair(s) without a wheel")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
