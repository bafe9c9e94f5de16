"""Helpers for tests and scripts that drive the CardiacQuan Slicer module on real MRML classes.

Uses the ``slicer-core`` wheel (Slicer's MRML nodes and module logics without Qt).  A scene is set
up the way the Slicer application does it: a vtkMRMLScene with a vtkSlicerApplicationLogic, the
module logics registered under Slicer's module names, and a data-IO/cache manager so that MRML
bundles (.mrb) can be read back.

Nothing here imports TensorFlow (VTK OpenGL rendering crashes in a process that imported it).
"""
import importlib.util
import os
import sys
import tempfile
import textwrap

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_DIR = os.path.join(REPO, "CardiacQuan")
MODULE_FILE = os.path.join(MODULE_DIR, "CardiacQuan.py")
for _path in (MODULE_DIR, os.path.dirname(os.path.abspath(__file__))):  # the module folder; slicer_stubs
    if _path not in sys.path:
        sys.path.insert(0, _path)


def slicer_core_available():
    """(True, "") or (False, reason)."""
    try:
        import slicer  # noqa: F401
        from slicer import vtkMRMLScene, vtkSlicerApplicationLogic, vtkSlicerSequencesLogic  # noqa: F401
    except Exception as e:  # ImportError, or a broken binary wheel
        return False, f"slicer-core is not importable ({type(e).__name__}: {e}); pip install slicer-core"
    return True, ""


class FrameworkMissing(RuntimeError):
    """Slicer's Python layer (../shared/slicer-python) or slicer-core is not there."""


def load_module():
    """Import CardiacQuan/CardiacQuan.py (the Slicer module file) by path, on Slicer's real Python
    layer over slicer-core with only the compiled GUI stood in (slicer_stubs.install()).

    Raises FrameworkMissing (with the reason) where that layer is absent, e.g. a user's clone."""
    import slicer_stubs

    ok, reason = slicer_stubs.install()
    if not ok:
        raise FrameworkMissing(reason)
    if "CardiacQuan" in sys.modules and getattr(sys.modules["CardiacQuan"], "__file__", None) == MODULE_FILE:
        return sys.modules["CardiacQuan"]
    spec = importlib.util.spec_from_file_location("CardiacQuan", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["CardiacQuan"] = module
    spec.loader.exec_module(module)
    return module


def load_module_or_skip():
    """The module file, loaded as in the tests, or skip the calling test saying what is missing
    (slicer-core, or Slicer's Python layer in ../shared: a user's clone has no ../shared)."""
    import pytest

    ok, reason = slicer_core_available()
    if not ok:
        pytest.skip(reason)
    try:
        return load_module()
    except FrameworkMissing as e:
        pytest.skip(str(e))


class SlicerScene:
    """A scene plus the application and module logics, as in Slicer."""

    MODULE_LOGICS = (
        ("Colors", "vtkSlicerColorLogic"),
        ("Volumes", "vtkSlicerVolumesLogic"),
        ("Sequences", "vtkSlicerSequencesLogic"),  # before any browser node is added
        ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
        ("Tables", "vtkSlicerTablesLogic"),
        ("Plots", "vtkSlicerPlotsLogic"),
        ("Terminologies", "vtkSlicerTerminologiesModuleLogic"),
        ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
    )

    def __init__(self):
        import slicer
        from vtkmodules.vtkCommonCore import vtkCollection

        self.tempDirs = []
        self.cacheDir = self.tempdir("cq-cache-")
        self.scene = slicer.vtkMRMLScene()
        self.cacheManager = slicer.vtkCacheManager()
        self.cacheManager.SetRemoteCacheDirectory(self.cacheDir)
        self.dataIOManager = slicer.vtkDataIOManager()
        self.dataIOManager.SetCacheManager(self.cacheManager)
        self.scene.SetCacheManager(self.cacheManager)
        self.scene.SetDataIOManager(self.dataIOManager)

        crosshair = slicer.vtkMRMLCrosshairNode()
        crosshair.SetCrosshairName("default")
        self.scene.AddNode(crosshair)

        self.appLogic = slicer.vtkSlicerApplicationLogic()
        self.appLogic.SetMRMLScene(self.scene)
        self.appLogic.GetColorLogic().SetMRMLScene(self.scene)
        self.appLogic.SetSliceLogics(vtkCollection())
        self.appLogic.SetViewLogics(vtkCollection())
        self.logics = {}
        for name, className in self.MODULE_LOGICS:
            if name == "Terminologies":
                # no terminology JSON files ship with slicer-core; segments carry their terminology strings
                self._quietly(lambda: self._addLogic(name, className))
            else:
                self._addLogic(name, className)
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene)

    def tempdir(self, prefix):
        """A temporary folder removed by close()."""
        d = tempfile.mkdtemp(prefix=prefix)
        self.tempDirs.append(d)
        return d

    def close(self):
        import shutil

        self.scene.Clear(1)
        for d in self.tempDirs:
            shutil.rmtree(d, ignore_errors=True)
        self.tempDirs = []

    def _addLogic(self, name, className):
        import slicer

        logic = getattr(slicer, className)()
        logic.SetMRMLApplicationLogic(self.appLogic)
        logic.SetMRMLScene(self.scene)
        self.appLogic.SetModuleLogic(name, logic)
        self.logics[name] = logic
        return logic

    @staticmethod
    def _quietly(fn):
        import vtk

        previous = vtk.vtkObject.GetGlobalWarningDisplay()
        vtk.vtkObject.GlobalWarningDisplayOff()
        try:
            return fn()
        finally:
            vtk.vtkObject.SetGlobalWarningDisplay(previous)

    # -- scene I/O --------------------------------------------------------------------
    def save_mrb(self, path):
        """Save the scene as a MRML bundle (.mrb), as File > Save does."""
        bundleDir = self.tempdir("cq-mrb-")
        sdb = os.path.join(bundleDir, os.path.splitext(os.path.basename(path))[0])
        os.makedirs(sdb)
        if not self.appLogic.SaveSceneToSlicerDataBundleDirectory(sdb, None):
            raise RuntimeError("saving the scene bundle failed")
        if os.path.exists(path):
            os.remove(path)
        if not self.appLogic.Zip(path, sdb):
            raise RuntimeError("zipping the scene bundle failed")
        return path

    @classmethod
    def load_mrb(cls, path):
        s = cls()
        if not s.appLogic.OpenSlicerDataBundle(path, s.tempdir("cq-open-")):
            raise RuntimeError(f"could not open {path}")
        return s

    def add_slice_node(self, name="Red"):
        import slicer

        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLApplicationLogic(self.appLogic)
        logic.SetMRMLScene(self.scene)
        node = logic.AddSliceNode(name)
        self.appLogic.GetSliceLogics().AddItem(logic)
        self._sliceLogic = logic
        return node


# --------------------------------------------------------------------------------------
# cines
# --------------------------------------------------------------------------------------
def ijk_to_ras_from_geometry(spacing, origins, direction, slice_spacing=8.0):
    """4x4 IJK->RAS from engine/Cine geometry (spacing (row, col), origins (Z,3) LPS, direction LPS)."""
    lpsToRas = np.diag([-1.0, -1.0, 1.0])
    d = np.eye(3) if direction is None else np.asarray(direction, float)
    origins = np.asarray(origins, float)
    m = np.eye(4)
    m[:3, 0] = lpsToRas @ d[:, 0] * spacing[1]
    m[:3, 1] = lpsToRas @ d[:, 1] * spacing[0]
    if len(origins) > 1:
        m[:3, 2] = lpsToRas @ (origins[1] - origins[0])
    else:
        m[:3, 2] = lpsToRas @ np.cross(d[:, 0], d[:, 1]) * slice_spacing
    m[:3, 3] = lpsToRas @ origins[0]
    return m


def default_ijk_to_ras(spacing=(1.6, 1.6), slice_spacing=8.0, origin=(12.0, -30.0, 40.0)):
    """A typical short-axis-like geometry (oblique, LPS-oriented display)."""
    a = np.deg2rad(20.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    m = np.eye(4)
    m[:3, 0] = rot @ np.array([-1.0, 0, 0]) * spacing[1]
    m[:3, 1] = rot @ np.array([0, -1.0, 0]) * spacing[0]
    m[:3, 2] = np.array([0, 0, 1.0]) * slice_spacing
    m[:3, 3] = origin
    return m


def add_cine_sequence(scene, image, ijk_to_ras, times_ms=None, name="Cine"):
    """Load a (T,Z,R,C) array as a volume sequence with a browser; returns (proxy, sequence, browser)."""
    import slicer
    import vtk
    import vtk.util.numpy_support as vtk_np

    image = np.asarray(image)
    T, Z, R, C = image.shape
    times = np.arange(T) * 40.0 if times_ms is None else np.asarray(times_ms, float)
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    seq.SetIndexName("time")
    seq.SetIndexUnit("ms")
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(ijk_to_ras[r, c]))
    for t in range(T):
        v = slicer.vtkMRMLScalarVolumeNode()
        img = vtk.vtkImageData()
        img.SetDimensions(C, R, Z)
        img.AllocateScalars(vtk.VTK_SHORT if np.issubdtype(image.dtype, np.integer) else vtk.VTK_FLOAT, 1)
        vtk_np.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(Z, R, C)[:] = image[t]
        v.SetAndObserveImageData(img)
        v.SetIJKToRASMatrix(m)
        seq.SetDataNodeAtValue(v, f"{times[t]:g}")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(seq.GetID())
    proxy = browser.GetProxyNode(seq)
    if proxy is None:
        raise RuntimeError("no proxy node: was the Sequences logic registered before adding the browser?")
    proxy.CreateDefaultDisplayNodes()
    return proxy, seq, browser


def add_multiframe_volume(scene, image, ijk_to_ras, times_ms=None, name="Cine4D"):
    """Load a (T,Z,R,C) array as one multi-component volume (a 4-D volume, frames as components)."""
    import vtk
    import vtk.util.numpy_support as vtk_np

    T, Z, R, C = image.shape
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", name)
    img = vtk.vtkImageData()
    img.SetDimensions(C, R, Z)
    img.AllocateScalars(vtk.VTK_FLOAT, T)
    vtk_np.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(Z, R, C, T)[:] = np.moveaxis(image, 0, -1)
    node.SetAndObserveImageData(img)
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(ijk_to_ras[r, c]))
    node.SetIJKToRASMatrix(m)
    times = np.arange(T) * 40.0 if times_ms is None else np.asarray(times_ms, float)
    node.SetAttribute("MultiVolume.FrameLabels", ",".join(f"{t:g}" for t in times))
    node.SetAttribute("MultiVolume.FrameIdentifyingDICOMTagUnits", "ms")
    node.SetAttribute("MultiVolume.NumberOfFrames", str(T))
    return node


def phantom(seed=3, n_frames=12, n_slices=3):
    """(image, labels, ijk_to_ras, times_ms, source): the project's phantom generator when it exists,
    else the numpy phantom of the module's self-test."""
    try:
        from cardiacquan.synthetic.phantom import make_phantom  # noqa: WPS433
    except ImportError:
        make_phantom = None
    if make_phantom is not None:
        p = make_phantom(seed=seed, n_frames=n_frames, n_slices=n_slices)
        cine = p.cine
        m = ijk_to_ras_from_geometry(cine.spacing, cine.origins, cine.direction,
                                     cine.slice_thickness or 8.0)
        return (np.asarray(cine.image, np.float32), np.asarray(p.labels, np.uint8), m,
                np.asarray(cine.times_ms, float), "cardiacquan.synthetic.phantom")
    module = load_module()
    image, labels, _, _ = module.makePhantomCine(nFrames=n_frames, nSlices=n_slices, seed=seed)
    return image, labels, default_ijk_to_ras(), np.arange(n_frames) * 40.0, "makePhantomCine"


# --------------------------------------------------------------------------------------
# scene comparison
# --------------------------------------------------------------------------------------
def snapshot(scene):
    """Everything a 'scene unchanged' check compares: nodes, their names/attributes/references,
    browser contents, subject hierarchy items, and the image and table data."""
    import vtk.util.numpy_support as vtk_np

    out = {}
    nodes = scene.GetNodes()
    for i in range(nodes.GetNumberOfItems()):
        n = nodes.GetItemAsObject(i)
        attrs = {a: n.GetAttribute(a) for a in n.GetAttributeNames() or []}
        refs = {}
        for r in range(n.GetNumberOfNodeReferenceRoles()):
            role = n.GetNthNodeReferenceRole(r)
            refs[role] = tuple(n.GetNthNodeReferenceID(role, k) for k in range(n.GetNumberOfNodeReferences(role)))
        entry = dict(cls=n.GetClassName(), name=n.GetName(), attrs=attrs, refs=refs)
        if n.IsA("vtkMRMLVolumeNode") and n.GetImageData() is not None:
            a = vtk_np.vtk_to_numpy(n.GetImageData().GetPointData().GetScalars())
            entry["data"] = (a.shape, float(np.asarray(a, float).sum()), n.GetImageData().GetDimensions())
            entry["origin"] = tuple(round(x, 6) for x in n.GetOrigin())
            entry["spacing"] = tuple(round(x, 6) for x in n.GetSpacing())
        if n.IsA("vtkMRMLSequenceNode"):
            entry["index"] = [n.GetNthIndexValue(k) for k in range(n.GetNumberOfDataNodes())]
            entry["items"] = [volume_digest(n.GetNthDataNode(k)) for k in range(n.GetNumberOfDataNodes())]
        if n.IsA("vtkMRMLSequenceBrowserNode"):
            import vtk

            c = vtk.vtkCollection()
            n.GetSynchronizedSequenceNodes(c, True)
            entry["sync"] = sorted(c.GetItemAsObject(k).GetID() for k in range(c.GetNumberOfItems()))
            entry["selected"] = n.GetSelectedItemNumber()
        if n.IsA("vtkMRMLTableNode"):
            entry["table"] = (n.GetNumberOfRows(), n.GetNumberOfColumns())
        out[n.GetID()] = entry
    sh = scene.GetSubjectHierarchyNode()
    if sh is not None:
        import vtk

        ids = vtk.vtkIdList()
        sh.GetItemChildren(sh.GetSceneItemID(), ids, True)
        out["__sh__"] = sorted((sh.GetItemName(ids.GetId(i)), sh.GetItemParent(ids.GetId(i)) != sh.GetSceneItemID())
                               for i in range(ids.GetNumberOfIds()))
    return out


def volume_digest(node):
    import vtk.util.numpy_support as vtk_np

    if node is None or not node.IsA("vtkMRMLVolumeNode") or node.GetImageData() is None:
        return None
    a = vtk_np.vtk_to_numpy(node.GetImageData().GetPointData().GetScalars())
    return (a.shape, float(np.asarray(a, float).sum()), tuple(round(x, 6) for x in node.GetOrigin()))


def segmentation_labels(segNode, shapeZRC, ijk_to_ras):
    """Label array (Z,R,C) of a segmentation node on a frame grid, by segment name."""
    load_module()
    from CardiacQuanLib.mrml_arrays import frameGeometryImage, segmentationToLabels

    return segmentationToLabels(segNode, frameGeometryImage(ijk_to_ras, shapeZRC), shapeZRC)


def segment_array(segNode, segmentId, shapeZRC, ijk_to_ras):
    """Binary (Z,R,C) array of one segment on the frame grid."""
    import slicer
    import vtk.util.numpy_support as vtk_np

    load_module()
    from CardiacQuanLib.mrml_arrays import frameGeometryImage

    ref = frameGeometryImage(ijk_to_ras, shapeZRC)
    binary = slicer.vtkOrientedImageData()
    segNode.GetBinaryLabelmapRepresentation(segmentId, binary)
    out = np.zeros(shapeZRC, bool)
    e = binary.GetExtent()
    if e[0] > e[1]:
        return out
    res = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(binary, ref, res, False, True)
    e = res.GetExtent()
    a = vtk_np.vtk_to_numpy(res.GetPointData().GetScalars()).reshape(e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
    out[e[4]:e[5] + 1, e[2]:e[3] + 1, e[0]:e[1] + 1] = a > 0
    return out


# --------------------------------------------------------------------------------------
# a stand-in engine (same command line, files and stderr protocol as `python -m cardiacquan`;
# file names, columns and the protocol come from cardiacquan.contract)
# --------------------------------------------------------------------------------------
FAKE_ENGINE_MAIN = textwrap.dedent('''
    """Stand-in engine for tests: numpy only. Mode from $CQFAKE_MODE: ok, error, hang, badresults;
    $CQFAKE_IGNORE_TERM: the hanging engine ignores SIGTERM (only SIGKILL ends it)."""
    import argparse, csv, json, os, signal, subprocess, sys, time
    import numpy as np
    from cardiacquan import contract

    def progress(done, total, msg):
        print(contract.progress_line(done, total, msg), file=sys.stderr, flush=True)

    def main():
        ap = argparse.ArgumentParser()
        ap.add_argument("command")
        ap.add_argument("input")
        ap.add_argument("-o", "--output", required=True)
        ap.add_argument("--slices", default="all")
        ap.add_argument("--labels")
        ap.add_argument("--no-figures", action="store_true")
        ap.add_argument("--bullseye", action="store_true")
        a = ap.parse_args()
        mode = os.environ.get("CQFAKE_MODE", "ok")
        cine = contract.load_cine_npz(a.input)
        T, Z, R, C = cine["image"].shape
        print("fake engine: loaded", cine["image"].shape, file=sys.stderr, flush=True)
        if mode == "error":
            print("some log text", file=sys.stderr)
            print(contract.error_line("the network found no left ventricle in slice 2"), file=sys.stderr, flush=True)
            sys.exit(3)
        if mode == "hang":
            if os.environ.get("CQFAKE_IGNORE_TERM"):
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            with open(os.path.join(os.environ["CQFAKE_PIDDIR"], "child.pid"), "w") as f:
                f.write(str(child.pid))
            for t in range(1000):
                progress(t, 1000, f"frame {t} of 1000")
                time.sleep(0.2)
        if a.labels:
            labels = contract.load_results_npz(a.labels)["labels"]
        else:  # stand-in "network": the brightest blob near the centre is the cavity, a ring around it the wall
            img = cine["image"]
            labels = np.zeros(img.shape, np.uint8)
            rr, cc = np.mgrid[0:R, 0:C]
            near = np.hypot(rr - R / 2, cc - C / 2) < min(R, C) / 4
            for t in range(T):
                for z in range(Z):
                    cav = (img[t, z] > np.percentile(img[t, z][near], 85)) & near
                    ring = cav.copy()
                    for _ in range(3):
                        ring = ring | np.roll(ring, 1, 0) | np.roll(ring, -1, 0) | np.roll(ring, 1, 1) | np.roll(ring, -1, 1)
                    labels[t, z][ring & ~cav] = contract.MYOCARDIUM
                    labels[t, z][cav] = contract.LV_CAVITY
        slices = list(range(Z)) if a.slices == "all" else [Z // 2] if a.slices == "mid" else [int(a.slices)]
        os.makedirs(a.output, exist_ok=True)
        rsp, csp = cine["spacing"]
        rows = []
        sectors = np.zeros_like(labels)
        per_slice = []
        for z in slices:
            cav = (labels[:, z] == contract.LV_CAVITY).sum(axis=(1, 2)) * rsp * csp
            myo = (labels[:, z] == contract.MYOCARDIUM).sum(axis=(1, 2)) * rsp * csp
            ed, es = int(np.argmax(cav)), int(np.argmin(cav))
            phase = np.zeros(T, int)
            t = (ed + 1) % T
            while True:
                phase[t] = 1
                if t == es:
                    break
                t = (t + 1) % T
            per_slice.append(dict(slice=z, ed_frame=ed, es_frame=es))
            for t in range(T):
                progress(len(rows) + 1, len(slices) * T, f"frame {t + 1} of {T}")
                r = np.sqrt(cav[t] / np.pi)
                rr, cc = np.nonzero(labels[t, z] == contract.LV_CAVITY)
                if rr.size:
                    cy, cx = rr.mean(), cc.mean()
                    yy, xx = np.nonzero(labels[t, z] == contract.MYOCARDIUM)
                    ang = np.degrees(np.arctan2(-(yy - cy) * rsp, (xx - cx) * csp)) % 360
                    sectors[t, z, yy, xx] = ((ang - 180) % 360 // 60).astype(np.uint8) + 1
                indices = [round(float(cav[t]), 4), round(float(myo[t]), 4),
                           round(2 * r, 3), round(2 * r + 0.5, 3), round(2 * r - 0.5, 3),
                           *[round(5.0 + 0.1 * k + 0.01 * t, 3) for k in range(1, 7)]]
                # every column of contract.INDICES_COLUMNS, in its order
                values = [z, float(cine["origins"][z] @ [0, 0, 1]), t, float(cine["times_ms"][t]), *indices,
                          int(phase[t]), 180.0, "rv", 0, 1, "labels" if a.labels else "network"]
                assert len(values) == len(contract.INDICES_COLUMN_NAMES), "the contract's columns changed"
                rows.append(dict(zip(contract.INDICES_COLUMN_NAMES, values)))
        with open(os.path.join(a.output, contract.INDICES_CSV), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=contract.INDICES_COLUMN_NAMES)
            w.writeheader()
            w.writerows(rows)
        mid = slices[len(slices) // 2]
        ps = next(p for p in per_slice if p["slice"] == mid)
        summary = dict(ed_frame=ps["ed_frame"], es_frame=ps["es_frame"], mid_slice=mid, slices=per_slice,
                       software_version="fake", model="none", warnings=[])
        assert set(summary) <= set(contract.SUMMARY_KEYS), "the contract's summary keys changed"
        with open(os.path.join(a.output, contract.SUMMARY_JSON), "w") as f:
            json.dump(summary, f)
        if mode == "badresults":
            contract.save_results_npz(os.path.join(a.output, contract.RESULTS_NPZ), labels[:, :1])
        else:
            contract.save_results_npz(os.path.join(a.output, contract.RESULTS_NPZ), labels, sectors)

    if __name__ == "__main__":
        main()
''')


def write_fake_engine(folder):
    """Write the stand-in engine package ``cqfake`` under folder; returns folder."""
    pkg = os.path.join(folder, "cqfake")
    os.makedirs(pkg, exist_ok=True)
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write("")
    with open(os.path.join(pkg, "__main__.py"), "w") as f:
        f.write(FAKE_ENGINE_MAIN)
    return folder


def real_engine_available():
    """The engine package cardiacquan and its command line are in the module folder."""
    engine = os.path.join(MODULE_DIR, "cardiacquan")
    return os.path.isfile(os.path.join(engine, "__main__.py")) and os.path.isfile(os.path.join(engine, "cli.py"))
