"""Building the output nodes from the engine's output folder: segmentation sequences, indices
table, area chart, subject-hierarchy folder.

All or nothing: every node is recorded in a SceneTransaction, the earlier outputs of the same cine
are removed only once the new ones are complete, and any error rolls the scene back.  The
segmentations are recorded per frame on the cine's own sequence browser, so scrubbing the cine
shows each frame's masks.
"""
import json
import os

import numpy as np
import vtk

import slicer
from cardiacquan.contract import (
    FRAME_COLUMN,
    INDEX_COLUMN,
    INDICES_COLUMN_INFO,
    INDICES_CSV,
    PHASE_COLUMN,
    RESULTS_NPZ,
    SLICE_COLUMN,
    SUMMARY_JSON,
    TIME_COLUMN,
    ExchangeError,
    load_results_npz,
)

from CardiacQuanLib.cine_sync import CURRENT_COLUMN, CURVES_SLICE_ATTRIBUTE
from CardiacQuanLib.errors import CardiacQuanRunError
from CardiacQuanLib.indices_table import fillTable, plotSlice, readIndicesCsv, setRunAttributes, sliceEdEs, toFloat, toInt
from CardiacQuanLib.mrml_arrays import floatImageData, labelExtent, labelsToSegmentationNode, vtkMatrix
from CardiacQuanLib.output_registry import (
    ROLE_ATTRIBUTE,
    FOLDER_ATTRIBUTE,
    CardiacQuanOutputs,
    Role,
    SceneTransaction,
    findOutputs,
    markOutput,
    removeOutputs,
)
from CardiacQuanLib.regional_import import (
    bullseyeFile,
    bullseyeVolume,
    fillSegmentsTable,
    readPng,
    readSegmentsCsv,
    segmentsFile,
)
from CardiacQuanLib.segment_definitions import (
    ALGORITHM_NAME,
    ALGORITHM_NAME_TAG,
    ALGORITHM_TYPE_TAG,
    AUTOMATIC,
    SECTOR_SEGMENTS_WITH_TERMINOLOGY,
    SEMIAUTOMATIC,
    TISSUE_SEGMENTS,
)

CURVES_INDICES_REFERENCE_ROLE = "CardiacQuanIndicesTable"


def readEngineOutputs(outDir, imageShape):
    """(summary dict, indices columns, rows, results dict) from the engine's folder, checked."""
    indicesPath, summaryPath, resultsPath = (os.path.join(outDir, f) for f in (INDICES_CSV, SUMMARY_JSON, RESULTS_NPZ))
    for p in (indicesPath, summaryPath, resultsPath):
        if not os.path.isfile(p):
            raise CardiacQuanRunError(f"the engine finished but wrote no {os.path.basename(p)}")
    with open(summaryPath, encoding="utf-8") as f:
        try:
            summary = json.load(f)
        except ValueError as e:
            raise CardiacQuanRunError(f"{SUMMARY_JSON} is not valid JSON ({e})") from None
    columns, rows = readIndicesCsv(indicesPath)
    try:
        results = load_results_npz(resultsPath)
    except ExchangeError as e:
        raise CardiacQuanRunError(str(e)) from None
    if results["labels"].shape != tuple(imageShape):
        raise CardiacQuanRunError(f"the engine's masks have shape {results['labels'].shape}, the cine {tuple(imageShape)}")
    return summary, columns, rows, results


def segmentTags(labelsGiven):
    """How the segments were made, as Slicer's DICOM SEG export reads it from the segment tags:
    AUTOMATIC when the network segmented the cine, SEMIAUTOMATIC for masks given to the engine or
    edited in Segment Editor (the sectors are this algorithm's in both cases)."""
    return {ALGORITHM_TYPE_TAG: SEMIAUTOMATIC if labelsGiven else AUTOMATIC, ALGORITHM_NAME_TAG: ALGORITHM_NAME}


def importResults(scene, sequencesLogic, cine, outDir, labelsGiven=False):
    """Create the output nodes of `cine` (a CineInput) from the engine's files; on any error undo everything."""
    summary, columns, rows, results = readEngineOutputs(outDir, cine.image.shape)
    segments = readSegmentsCsv(segmentsFile(outDir))
    bullseyePng = bullseyeFile(outDir)
    tags = segmentTags(labelsGiven)
    old = findOutputs(scene, sequencesLogic, cine.ownerNode)
    tx = SceneTransaction(scene)
    try:
        out = CardiacQuanOutputs()
        out.summary = summary
        out.warnings = [str(w) for w in (summary.get("warnings") or [])]
        browser = ensureBrowser(scene, cine, tx)
        out.browser = browser
        base = cine.name
        out.segmentationSequence = addSegmentationSequence(
            scene, cine, results["labels"], TISSUE_SEGMENTS, f"{base} LV segmentation", Role.SEGMENTATION_SEQUENCE, tx,
            tags)
        if results.get("sectors") is not None:
            out.sectorsSequence = addSegmentationSequence(
                scene, cine, results["sectors"], SECTOR_SEGMENTS_WITH_TERMINOLOGY, f"{base} RWT sectors",
                Role.SECTORS_SEQUENCE, tx, tags)
        out.indicesTable = addIndicesTable(scene, cine, columns, rows, summary, f"{base} LV indices", tx)
        out.curvesTable, out.chart, out.series = addChart(scene, cine, rows, summary, out.indicesTable, base, tx)
        if segments is not None:
            out.segmentsTable = addSegmentsTable(scene, cine, *segments, f"{base} AHA segments", tx)
        if bullseyePng is not None:
            out.bullseye = addBullseye(scene, cine, bullseyePng, f"{base} bull's-eye", tx)
        # show the segmentations per frame on the cine's browser
        for seq, attr, fill in ((out.segmentationSequence, Role.SEGMENTATION, 0.35), (out.sectorsSequence, Role.SECTORS, 0.6)):
            if seq is None:
                continue
            tx.addToBrowser(browser, seq)
            browser.SetSaveChanges(seq, True)
            proxy = browser.GetProxyNode(seq)
            if proxy is None:
                raise CardiacQuanRunError("the Sequences module did not create the proxy segmentation")
            tx.created(proxy)
            tx.intendedNames.append((proxy, dict(tx.intendedNames).get(seq, seq.GetName())))
            markOutput(proxy, attr, cine.ownerNode)   # traceable even if its sequence is deleted
            setReferenceGeometry(proxy, cine.referenceVolume)
            if cine.referenceVolume is not None and cine.referenceVolume.GetTransformNodeID():
                proxy.SetAndObserveTransformNodeID(cine.referenceVolume.GetTransformNodeID())
            styleSegmentationDisplay(proxy, fill, outline=(attr == Role.SEGMENTATION))
            setattr(out, attr, proxy)
        out.folderItemID = placeInSubjectHierarchy(scene, cine, out, tx)
        # the new outputs are complete: drop the old ones, then take their names
        removeOutputs(scene, sequencesLogic, old, keep=set(id(n) for n in out.nodes()) | {id(browser)})
        for node, name in tx.intendedNames:
            if node.GetName() != name:
                node.SetName(name)
    except Exception:
        tx.rollback()
        raise
    return out


def ensureBrowser(scene, cine, tx):
    """The cine's sequence browser; a 4-D volume gets a sequence of its frames and a browser of its own."""
    if cine.browserNode is not None:
        return cine.browserNode
    if cine.sequenceNode is None:
        # 4-D volume: copy the frames into a volume sequence of our own so a browser can play them
        seq = tx.add(scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(f"{cine.name} frames")))
        seq.SetIndexName(cine.indexName)
        seq.SetIndexUnit(cine.indexUnit)
        markOutput(seq, Role.FRAMES_SEQUENCE, cine.ownerNode)
        for t in range(cine.image.shape[0]):
            v = slicer.vtkMRMLScalarVolumeNode()
            v.SetAndObserveImageData(floatImageData(cine.image[t]))
            v.SetIJKToRASMatrix(vtkMatrix(cine.ijkToRas))
            seq.SetDataNodeAtValue(v, cine.indexValues[t])
        cine.sequenceNode = seq
    browser = tx.add(scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(f"{cine.name} browser")))
    markOutput(browser, Role.BROWSER, cine.ownerNode)
    browser.SetAndObserveMasterSequenceNodeID(cine.sequenceNode.GetID())
    proxy = browser.GetProxyNode(cine.sequenceNode)
    if proxy is not None:
        tx.created(proxy)
        cine.referenceVolume = cine.referenceVolume or proxy
    cine.browserNode = browser
    return browser


def setReferenceGeometry(segmentation, volume):
    """Make `volume` (the cine frame the views show) the segmentation's reference image geometry:
    the node reference Slicer's DICOM SEG export reads to find the images the SEG refers to."""
    if volume is not None:
        segmentation.SetNodeReferenceID(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole(),
                                        volume.GetID())


def addSegmentationSequence(scene, cine, labelArray, segmentDefs, name, role, tx, tags=None):
    """A sequence of segmentations, one per frame, indexed like the cine; `tags` on every segment."""
    seq = tx.add(scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(name)), name)
    seq.SetIndexName(cine.indexName)
    seq.SetIndexUnit(cine.indexUnit)
    if cine.indexType is not None:
        seq.SetIndexType(cine.indexType)
    markOutput(seq, role, cine.ownerNode)
    geometry = slicer.vtkSegmentationConverter.SerializeImageGeometry(cine.frameGeometryImage())
    extent = labelExtent(labelArray)
    ijkToRas = vtkMatrix(cine.ijkToRas)
    for t in range(labelArray.shape[0]):
        segNode = labelsToSegmentationNode(labelArray[t], extent, ijkToRas, segmentDefs, geometry, tags)
        seq.SetDataNodeAtValue(segNode, cine.indexValues[t])
    return seq


def addIndicesTable(scene, cine, columns, rows, summary, name, tx):
    """The indices table (indices.csv as it is) with the run's summary as attributes."""
    table = tx.add(scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name)), name)
    markOutput(table, Role.INDICES_TABLE, cine.ownerNode)
    fillTable(table, columns, rows)
    setRunAttributes(table, summary, cine.indexValues, cine.timesKnown)
    return table


def addSegmentsTable(scene, cine, columns, rows, name, tx):
    """The AHA 16-segment table (segments.csv as it is, plus each segment's SNOMED CT code)."""
    table = tx.add(scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name)), name)
    markOutput(table, Role.SEGMENTS_TABLE, cine.ownerNode)
    fillSegmentsTable(table, columns, rows)
    return table


def addBullseye(scene, cine, path, name, tx):
    """The bull's-eye picture as an RGB volume (the results layout shows it in a slice view of its own)."""
    node = bullseyeVolume(readPng(path))
    node.SetName(scene.GenerateUniqueName(name))
    scene.AddNode(node)
    tx.add(node, name)
    node.CreateDefaultDisplayNodes()
    markOutput(node, Role.BULLSEYE, cine.ownerNode)
    return node


def addChart(scene, cine, rows, summary, indicesTable, base, tx):
    """Area curves of one slice (cavity, myocardium, systole band, ED/ES markers): (table, chart, series)."""
    shownSlice = plotSlice(rows, summary)
    sliceRows = sorted((r for r in rows if toInt(r.get(SLICE_COLUMN)) == shownSlice),
                       key=lambda r: toInt(r.get(FRAME_COLUMN)))
    if not sliceRows:
        return None, None, []
    a1, a2 = INDEX_COLUMN["A1"], INDEX_COLUMN["A2"]
    ed, es = sliceEdEs(summary, shownSlice)
    frames = np.array([toInt(r.get(FRAME_COLUMN)) for r in sliceRows])
    times = np.array([toFloat(r.get(TIME_COLUMN)) for r in sliceRows])
    if not cine.timesKnown or not np.all(np.isfinite(times)):
        times = frames.astype(float)
    cav = np.array([toFloat(r.get(a1)) for r in sliceRows])
    myo = np.array([toFloat(r.get(a2)) for r in sliceRows])
    phase = np.array([toInt(r.get(PHASE_COLUMN)) for r in sliceRows])
    top = np.nanmax(np.concatenate([cav, myo])) if np.any(np.isfinite(np.concatenate([cav, myo]))) else 1.0
    systole = np.where(phase == 1, top * 1.08, np.nan)
    edMarker = np.where(frames == ed, cav, np.nan)
    esMarker = np.where(frames == es, cav, np.nan)

    curves = tx.add(scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{base} LV area curves")),
                    f"{base} LV area curves")
    markOutput(curves, Role.CURVES_TABLE, cine.ownerNode)
    curves.SetAttribute(CURVES_SLICE_ATTRIBUTE, str(shownSlice))
    curves.SetNodeReferenceID(CURVES_INDICES_REFERENCE_ROLE, indicesTable.GetID())
    xName = TIME_COLUMN if cine.timesKnown else FRAME_COLUMN
    areaUnit = INDICES_COLUMN_INFO[a1][0]
    cols = [(FRAME_COLUMN, frames.astype(float), "", "Frame index"),
            (TIME_COLUMN, times, INDICES_COLUMN_INFO[TIME_COLUMN][0] if cine.timesKnown else "", "Time of the frame"),
            (a1, cav, areaUnit, INDICES_COLUMN_INFO[a1][1]),
            (a2, myo, INDICES_COLUMN_INFO[a2][0], INDICES_COLUMN_INFO[a2][1]),
            ("systole", systole, "", "Systole band (frames after ED up to ES)"),
            ("ed_marker", edMarker, areaUnit, "Cavity area at end-diastole"),
            ("es_marker", esMarker, areaUnit, "Cavity area at end-systole"),
            (CURRENT_COLUMN, np.full(len(frames), np.nan), areaUnit,
             "Cavity area at the frame the cine's browser shows (follows the browser)")]
    for colName, values, unit, desc in cols:
        arr = vtk.vtkDoubleArray()
        arr.SetName(colName)
        for v in values:
            arr.InsertNextValue(float(v))
        curves.AddColumn(arr)
        if unit:
            curves.SetColumnUnitLabel(colName, unit)
        curves.SetColumnDescription(colName, desc)

    chart = tx.add(scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{base} LV areas")),
                   f"{base} LV areas")
    markOutput(chart, Role.CHART, cine.ownerNode)
    edTxt = f"ED frame {ed}" if ed is not None else "ED ?"
    esTxt = f"ES frame {es}" if es is not None else "ES ?"
    chart.SetTitle(f"LV areas, slice {shownSlice} ({edTxt}, {esTxt})")
    chart.SetXAxisTitle("Time (ms)" if cine.timesKnown else "Frame")
    chart.SetYAxisTitle(f"Area ({areaUnit})")
    chart.SetLegendVisibility(True)
    series = []
    specs = [("cavity", "LV cavity area", a1, (0.90, 0.25, 0.25), 3, "circle"),
             ("myocardium", "LV myocardium area", a2, (0.30, 0.75, 0.35), 3, "square"),
             ("systole", "Systole (ED to ES)", "systole", (0.55, 0.55, 0.55), 8, None),
             ("ed", "End-diastole (ED)", "ed_marker", (0.10, 0.10, 0.60), 0, "diamond"),
             ("es", "End-systole (ES)", "es_marker", (0.85, 0.45, 0.00), 0, "diamond"),
             ("current", "Current frame", CURRENT_COLUMN, (0.05, 0.05, 0.05), 0, "circle")]
    for key, title, yName, color, width, marker in specs:
        s = tx.add(scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(f"{base} {title}")),
                   f"{base} {title}")
        markOutput(s, Role.SERIES_PREFIX + key, cine.ownerNode)
        s.SetAndObserveTableNodeID(curves.GetID())
        s.SetXColumnName(xName)
        s.SetYColumnName(yName)
        s.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        s.SetColor(*color)
        if width:
            s.SetLineWidth(width)
            s.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
        else:
            s.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleNone)
        s.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.GetMarkerStyleFromString(marker) if marker
                         else slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        s.SetMarkerSize(18 if key == "current" else 14 if key in ("ed", "es") else 7)
        chart.AddAndObservePlotSeriesNodeID(s.GetID())
        series.append(s)
    return curves, chart, series


def placeInSubjectHierarchy(scene, cine, out, tx):
    """Put the outputs in a folder beside the input (same parent item); returns the folder item."""
    shNode = scene.GetSubjectHierarchyNode()
    if shNode is None:
        return 0
    sceneItem = shNode.GetSceneItemID()
    inputItem = shNode.GetItemByDataNode(cine.inputNode) or shNode.GetItemByDataNode(cine.ownerNode)
    parent = shNode.GetItemParent(inputItem) if inputItem else sceneItem
    folder = shNode.CreateFolderItem(parent or sceneItem, f"{cine.name} CardiacQuan")
    tx.createdItem(folder)
    shNode.SetItemAttribute(folder, FOLDER_ATTRIBUTE, cine.ownerNode.GetID())
    members = list(out.nodes())
    if out.browser is not None and out.browser.GetAttribute(ROLE_ATTRIBUTE):
        members.append(out.browser)  # a browser this module made (4-D input)
    if cine.sequenceNode is not None and cine.sequenceNode.GetAttribute(ROLE_ATTRIBUTE) == Role.FRAMES_SEQUENCE:
        members.append(cine.sequenceNode)
        proxy = out.browser.GetProxyNode(cine.sequenceNode) if out.browser is not None else None
        if proxy is not None:
            members.append(proxy)
    for node in members:
        item = shNode.GetItemByDataNode(node)
        if item:
            shNode.SetItemParent(item, folder)
        else:  # outside the Slicer application nothing creates items for new nodes
            shNode.CreateItem(folder, node)
    return folder


def styleSegmentationDisplay(segNode, fillOpacity, outline):
    """2-D fill (and outline), no 3-D: the masks are shown over the cine in the slice views."""
    dn = segNode.GetDisplayNode()
    if dn is None:
        segNode.CreateDefaultDisplayNodes()
        dn = segNode.GetDisplayNode()
    if dn is None:
        return
    dn.SetVisibility(True)
    dn.SetVisibility2DFill(True)
    dn.SetOpacity2DFill(fillOpacity)
    dn.SetVisibility2DOutline(outline)
    dn.SetOpacity2DOutline(1.0)
    dn.SetVisibility3D(False)
