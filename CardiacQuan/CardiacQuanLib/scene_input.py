"""Reading the cine, and masks edited by the user, from the scene; nothing here modifies a node.

A cine reaches the module as a volume sequence (with its browser), the sequence's proxy volume,
or a 4-D (multi-frame) volume.  Whichever it is, CineInput holds the same things: (T, Z, R, C)
pixels, IJK->RAS geometry, one index value per frame, the browser (if any) and the "owner" node
the outputs will reference.
"""
import numpy as np
import vtk

from cardiacquan.contract import LV_CAVITY, MYOCARDIUM

from CardiacQuanLib.errors import CardiacQuanRunError
from CardiacQuanLib.mrml_arrays import frameGeometryImage, imageArray, segmentationToLabels, volumeIjkToRas
from CardiacQuanLib.output_registry import ROLE_ATTRIBUTE, Role, browsersWithRole, inputOf


class CineInput:
    """What the Logic reads from an input node: pixels, geometry, frame index values, browser."""

    def __init__(self):
        self.inputNode = None          # node the user selected
        self.ownerNode = None          # node the outputs are attached to (cine sequence, or the 4-D volume)
        self.sequenceNode = None       # volume sequence (None for a 4-D volume)
        self.browserNode = None        # sequence browser showing the cine (may be None before outputs exist)
        self.referenceVolume = None    # a volume node with the frame geometry (proxy or 4-D volume)
        self.image = None              # (T, Z, R, C) float32
        self.ijkToRas = None           # 4x4 numpy
        self.indexValues = []          # one string per frame
        self.indexName = "time"
        self.indexUnit = "ms"
        self.indexType = None
        self.timesMs = None
        self.timesKnown = False
        self.name = ""

    @property
    def shape(self):
        return self.image.shape

    def frameGeometryImage(self):
        """An empty vtkOrientedImageData with the full frame geometry."""
        return frameGeometryImage(self.ijkToRas, self.image.shape[1:])

    def engineGeometry(self):
        """(spacing (row, col), origins (Z,3) LPS, direction 3x3 LPS, slice thickness) for the engine."""
        M = self.ijkToRas
        colVec, rowVec, sliceVec = M[:3, 0], M[:3, 1], M[:3, 2]
        colSp, rowSp = float(np.linalg.norm(colVec)), float(np.linalg.norm(rowVec))
        rasToLps = np.diag([-1.0, -1.0, 1.0])
        colDir = rasToLps @ (colVec / colSp)
        rowDir = rasToLps @ (rowVec / rowSp)
        normal = np.cross(colDir, rowDir)
        Z = self.image.shape[1]
        origins = np.array([rasToLps @ (M @ np.array([0.0, 0.0, z, 1.0]))[:3] for z in range(Z)])
        direction = np.column_stack([colDir, rowDir, normal])
        return (rowSp, colSp), origins, direction, float(np.linalg.norm(sliceVec))


def firstCineInScene(scene):
    """A likely input: the proxy volume of the first browser that plays a volume sequence."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(i, "vtkMRMLSequenceBrowserNode")
        master = browser.GetMasterSequenceNode()
        if master and "VolumeNode" in (master.GetDataNodeClassName() or "") and master.GetAttribute(ROLE_ATTRIBUTE) is None:
            proxy = browser.GetProxyNode(master)
            return proxy or master
    return None


def readCine(scene, sequencesLogic, inputNode) -> CineInput:
    """Pixels, geometry and frame index values of a cine node (the node itself is not modified)."""
    if inputNode is None:
        raise CardiacQuanRunError("no input cine selected")
    cine = CineInput()
    cine.inputNode = inputNode
    sequence = None
    browser = None
    if inputNode.IsA("vtkMRMLSequenceNode"):
        sequence = inputNode
        if sequencesLogic is not None:
            browser = sequencesLogic.GetFirstBrowserNodeForSequenceNode(sequence)
    elif inputNode.IsA("vtkMRMLVolumeNode"):
        if sequencesLogic is not None:
            browser = sequencesLogic.GetFirstBrowserNodeForProxyNode(inputNode)
        if browser is not None:
            sequence = browser.GetSequenceNode(inputNode)
    else:
        raise CardiacQuanRunError(f"'{inputNode.GetName()}' is not a volume sequence or a volume")

    if sequence is not None:
        readSequence(cine, sequence, browser)
    else:
        readMultiFrameVolume(scene, cine, inputNode)
    cine.name = (cine.ownerNode.GetName() or "cine")
    T = cine.image.shape[0]
    if T < 2:
        raise CardiacQuanRunError(f"'{cine.name}' has a single frame: a cine over the cardiac cycle is needed")
    if min(cine.image.shape[2:]) < 8:
        raise CardiacQuanRunError(f"the frames of '{cine.name}' are too small ({cine.image.shape[2]}x{cine.image.shape[3]})")
    return cine


def readSequence(cine, sequence, browser):
    """Fill `cine` from a volume sequence (every frame the same grid)."""
    n = sequence.GetNumberOfDataNodes()
    if n == 0:
        raise CardiacQuanRunError(f"the sequence '{sequence.GetName()}' is empty")
    className = sequence.GetDataNodeClassName() or ""
    if "VolumeNode" not in className or "LabelMap" in className:
        raise CardiacQuanRunError(f"the sequence '{sequence.GetName()}' holds {className or 'no'} items, not image volumes")
    frames, ijk = [], None
    for i in range(n):
        node = sequence.GetNthDataNode(i)
        if node is None or node.GetImageData() is None:
            raise CardiacQuanRunError(f"frame {i} of '{sequence.GetName()}' holds no image")
        a = imageArray(node.GetImageData())
        if a.ndim != 3:
            raise CardiacQuanRunError(f"frame {i} of '{sequence.GetName()}' is not a scalar volume")
        m = volumeIjkToRas(node)
        if ijk is None:
            ijk = m
        elif frames and (a.shape != frames[0].shape or not np.allclose(m, ijk, atol=1e-3)):
            raise CardiacQuanRunError(f"frame {i} of '{sequence.GetName()}' differs in size or position from frame 0")
        frames.append(a)
    cine.image = np.stack(frames).astype(np.float32, copy=False)
    cine.ijkToRas = ijk
    cine.sequenceNode = sequence
    cine.ownerNode = sequence
    cine.browserNode = browser
    cine.referenceVolume = browser.GetProxyNode(sequence) if browser is not None else None
    cine.indexValues = [sequence.GetNthIndexValue(i) for i in range(n)]
    cine.indexName = sequence.GetIndexName() or "time"
    cine.indexUnit = sequence.GetIndexUnit() or ""
    cine.indexType = sequence.GetIndexType()
    cine.timesMs, cine.timesKnown = timesFromIndex(cine.indexValues, cine.indexUnit)


def readMultiFrameVolume(scene, cine, volume):
    """Fill `cine` from a 4-D volume (frames as scalar components)."""
    image = volume.GetImageData()
    nc = image.GetNumberOfScalarComponents() if image is not None else 0
    isMulti = volume.IsA("vtkMRMLMultiVolumeNode") or volume.GetAttribute("MultiVolume.NumberOfFrames") is not None
    if image is None or nc < 2 or not (isMulti or (volume.IsA("vtkMRMLVectorVolumeNode") and nc >= 5)):
        raise CardiacQuanRunError(
            f"'{volume.GetName()}' is a single 3-D volume; select a cine: a volume sequence (or its proxy volume) "
            "or a 4-D multi-frame volume")
    a = imageArray(image)                      # (Z, R, C, T)
    cine.image = np.ascontiguousarray(np.moveaxis(a, -1, 0)).astype(np.float32, copy=False)
    cine.ijkToRas = volumeIjkToRas(volume)
    cine.ownerNode = volume
    cine.referenceVolume = volume
    T = cine.image.shape[0]
    labels = [s.strip() for s in (volume.GetAttribute("MultiVolume.FrameLabels") or "").split(",") if s.strip()]
    cine.indexValues = labels if len(labels) == T else [str(i) for i in range(T)]
    unit = volume.GetAttribute("MultiVolume.FrameIdentifyingDICOMTagUnits") or ("ms" if len(labels) == T else "")
    cine.indexName = "time" if len(labels) == T else "frame"
    cine.indexUnit = unit
    cine.timesMs, cine.timesKnown = timesFromIndex(cine.indexValues, cine.indexUnit)
    # A 4-D volume has no browser: the first run makes one (with a copy of the frames) and later runs reuse it.
    for browser in browsersWithRole(scene, Role.BROWSER):
        if inputOf(browser) is volume and browser.GetMasterSequenceNode() is not None:
            cine.browserNode = browser
            cine.sequenceNode = browser.GetMasterSequenceNode()


def timesFromIndex(values, unit):
    """(times in ms, known) from a sequence's index values and unit."""
    try:
        t = np.array([float(v) for v in values])
    except ValueError:
        return np.arange(len(values), dtype=float), False
    u = (unit or "").strip().lower()
    if u in ("ms", "msec", "millisecond", "milliseconds"):
        return t, True
    if u in ("s", "sec", "second", "seconds"):
        return t * 1000.0, True
    return t, False


def currentSliceIndex(scene, cine, sliceNode=None):
    """Index (0-based) of the cine's slice at the centre of a slice view (Red by default)."""
    if sliceNode is None:
        sliceNode = scene.GetNodeByID("vtkMRMLSliceNodeRed") or scene.GetFirstNodeByClass("vtkMRMLSliceNode")
    if sliceNode is None:
        raise CardiacQuanRunError("there is no slice view to take the current slice from")
    sliceToRas = sliceNode.GetSliceToRAS()
    ras = np.array([sliceToRas.GetElement(i, 3) for i in range(3)] + [1.0])
    volume = cine.referenceVolume
    if volume is not None and volume.GetParentTransformNode() is not None:
        t = vtk.vtkGeneralTransform()
        volume.GetParentTransformNode().GetTransformFromWorld(t)
        ras[:3] = t.TransformPoint(ras[:3])
    ijk = np.linalg.solve(cine.ijkToRas, ras)
    k = int(round(ijk[2]))
    Z = cine.image.shape[1]
    if not 0 <= k < Z:
        raise CardiacQuanRunError(f"the {sliceNode.GetName()} view is not on a slice of the cine (slice {k} of 0..{Z - 1})")
    return k


def segmentationSequenceOf(segmentationNode, sequencesLogic):
    """The per-frame sequence of a segmentation given as a sequence or as its proxy node."""
    if segmentationNode.IsA("vtkMRMLSequenceNode"):
        sequence = segmentationNode
    elif segmentationNode.IsA("vtkMRMLSegmentationNode"):
        browser = sequencesLogic.GetFirstBrowserNodeForProxyNode(segmentationNode) if sequencesLogic else None
        sequence = browser.GetSequenceNode(segmentationNode) if browser else None
        if sequence is None:
            raise CardiacQuanRunError(f"'{segmentationNode.GetName()}' is not recorded per frame in a sequence")
    else:
        raise CardiacQuanRunError(f"'{segmentationNode.GetName()}' is not a segmentation")
    if "Segmentation" not in (sequence.GetDataNodeClassName() or ""):
        raise CardiacQuanRunError(f"the sequence '{sequence.GetName()}' does not hold segmentations")
    return sequence


def labelsFromSequence(cine, sequence, sequencesLogic):
    """(T, Z, R, C) uint8 label array from a per-frame segmentation sequence (edits of the proxy included)."""
    # Make sure the frame being edited right now is written back into the sequence.
    if sequencesLogic is not None:
        browsers = vtk.vtkCollection()
        sequencesLogic.GetBrowserNodesForSequenceNode(sequence, browsers)
        for i in range(browsers.GetNumberOfItems()):
            browser = browsers.GetItemAsObject(i)
            proxy = browser.GetProxyNode(sequence)
            if proxy is not None and browser.GetSaveChanges(sequence):
                sequencesLogic.UpdateSequencesFromProxyNodes(browser, proxy)

    T = cine.image.shape[0]
    reference = cine.frameGeometryImage()
    labels = np.zeros(cine.image.shape, dtype=np.uint8)
    for t in range(T):
        item = sequence.GetDataNodeAtValue(cine.indexValues[t], True)
        if item is None:
            raise CardiacQuanRunError(f"the segmentation has no item for frame {t} ({cine.indexName} {cine.indexValues[t]})")
        labels[t] = segmentationToLabels(item, reference, cine.image.shape[1:])
    if not np.any(labels == MYOCARDIUM) or not np.any(labels == LV_CAVITY):
        raise CardiacQuanRunError("the segmentation has no LV myocardium or no LV cavity")
    return labels
