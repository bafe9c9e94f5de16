"""The Slicer module's results as a reader uses them, on Slicer's real MRML classes (slicer-core):
PACS-ready segmentations (terminology that resolves, distinct AHA codes, segment tags, the
reference-image-geometry reference), results that follow the cine (chart marker, table row, go to
ED/ES, the results layout), the AHA segments table and bull's-eye, the startup hooks (terminology,
Sample Data) and the sample cine itself.

The terminology check parses Slicer's DICOM master lists from ../shared/slicer-python/terminologies
(skipped, with that reason, where ../shared is absent) and the extension's own .term.json.
"""
import json
import os
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slicer_scene as ss  # noqa: E402
from cardiacquan import contract  # noqa: E402

TERMINOLOGIES = os.path.join(ss.REPO, "..", "shared", "slicer-python", "terminologies")


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def module():
    return ss.load_module_or_skip()


@pytest.fixture(scope="module")
def done(module, tmp_path_factory):
    """One run on a 3-slice phantom cine from its masks, with the project's engine (segments.csv and
    the bull's-eye need the real engine); the scene has a layout node and the layout's view nodes."""
    import slicer

    if not ss.real_engine_available():
        pytest.skip("the cardiacquan engine's CLI is not in the module folder")
    S = ss.SlicerScene()
    for cls, tag in (("vtkMRMLTableViewNode", "TableView1"), ("vtkMRMLTableViewNode", "CardiacQuanSegmentsTable"),
                     ("vtkMRMLPlotViewNode", "PlotView1")):
        view = S.scene.AddNewNodeByClass(cls)
        view.SetSingletonTag(tag)
        view.SetLayoutName(tag)
    S.scene.AddNode(slicer.vtkMRMLLayoutNode())
    image, labels, ijk, times, _ = ss.phantom(seed=5, n_frames=12, n_slices=3)
    proxy, seq, browser = ss.add_cine_sequence(S.scene, image, ijk, times, "Cine")
    logic = module.CardiacQuanLogic(scene=S.scene, appLogic=S.appLogic)
    logic.temporaryDirectory = str(tmp_path_factory.mktemp("runs"))
    out = logic.quantify(proxy, slices="all", labels=labels, keepTemporaryFiles=True)
    yield types.SimpleNamespace(S=S, scene=S.scene, logic=logic, out=out, proxy=proxy, seq=seq, browser=browser,
                                labels=labels, outdir=out.outputDirectory)
    S.close()


def _tag(segment, name):
    import vtk

    value = vtk.mutable("")
    return str(value) if segment.GetTag(name, value) else None


def _segments(segNode):
    s = segNode.GetSegmentation()
    return [s.GetNthSegment(i) for i in range(s.GetNumberOfSegments())]


# --------------------------------------------------------------------------------------
# PACS-ready segmentations
# --------------------------------------------------------------------------------------
def _codes(path):
    """{context name: {(category code, type code): type meaning}} of a segmentation-category-type
    list, or {anatomic context name: {region code: meaning}} of an anatomic list."""
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    if "SegmentationCategoryTypeContextName" in d:
        out = {}
        for cat in d["SegmentationCodes"]["Category"]:
            for t in cat.get("Type", []):
                out[(f"{cat['CodingSchemeDesignator']}^{cat['CodeValue']}",
                     f"{t['CodingSchemeDesignator']}^{t['CodeValue']}")] = (cat["CodeMeaning"], t["CodeMeaning"],
                                                                           cat.get("showAnatomy", True))
        return d["SegmentationCategoryTypeContextName"], out
    out = {f"{r['CodingSchemeDesignator']}^{r['CodeValue']}": r["CodeMeaning"]
           for r in d["AnatomicCodes"]["AnatomicRegion"]}
    return d["AnatomicContextName"], out


def _resolves(entry, lists, anatomic):
    """Why a terminology entry string does not resolve in the lists, or "" when it does."""
    fields = entry.split("~")
    if len(fields) != 7:
        return f"{entry!r}: not 7 fields"
    context, category, typ, _, anatomicContext, region, _ = fields
    if context not in lists:
        return f"context {context!r} is in none of the lists"
    key = ("^".join(category.split("^")[:2]), "^".join(typ.split("^")[:2]))
    if key not in lists[context]:
        return f"{category} / {typ} is not in {context!r}"
    catMeaning, typeMeaning, showAnatomy = lists[context][key]
    if category.split("^")[2] != catMeaning or typ.split("^")[2] != typeMeaning:
        return f"{entry!r}: meanings differ from the list's ({catMeaning!r}, {typeMeaning!r})"
    if region not in ("", "^^"):
        if not showAnatomy:
            return f"{typ}: its category shows no anatomy, yet a region is given"
        codes = anatomic.get(anatomicContext, {})
        if "^".join(region.split("^")[:2]) not in codes:
            return f"region {region} is not in {anatomicContext!r}"
    return ""


def test_every_segment_terminology_resolves_in_the_master_lists_or_the_extensions_file(module):
    from CardiacQuanLib import segment_definitions as sd

    if not os.path.isdir(TERMINOLOGIES):
        pytest.skip("../shared/slicer-python/terminologies not present (user clone): Slicer's DICOM master lists")
    lists, anatomic = {}, {}
    for name in ("SegmentationCategoryTypeModifier-DICOM-Master.json",
                 "SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json"):
        context, codes = _codes(os.path.join(TERMINOLOGIES, name))
        lists[context] = codes
    context, codes = _codes(os.path.join(TERMINOLOGIES, "AnatomicRegionAndModifier-DICOM-Master.json"))
    anatomic[context] = codes
    context, codes = _codes(os.path.join(ss.MODULE_DIR, "Resources", sd.TERMINOLOGY_FILE))
    assert context == sd.CARDIACQUAN_CONTEXT
    lists[context] = codes
    entries = [d[4] for d in sd.TISSUE_SEGMENTS] + [d[4] for d in sd.SECTOR_SEGMENTS_WITH_TERMINOLOGY]
    problems = [p for p in (_resolves(e, lists, anatomic) for e in entries) if p]
    assert not problems, problems
    # the master lists alone hold no myocardium code: the extension's file is needed for it
    assert not any("49848007" in k[1] for c in lists if c != sd.CARDIACQUAN_CONTEXT for k in lists[c])
    # the file holds all 16 AHA segments with the codes of DICOM CID 3717, each once
    own = lists[sd.CARDIACQUAN_CONTEXT]
    assert {t.split("^")[1] for _, t in own} == set(sd.AHA_SEGMENT_CODES.values()) | {"49848007"}
    assert len(set(sd.AHA_SEGMENT_CODES.values())) == 16


def test_the_terminology_file_loads_into_slicers_terminology_logic(module):
    import slicer

    from CardiacQuanLib import startup
    from CardiacQuanLib.segment_definitions import CARDIACQUAN_CONTEXT

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert startup.ensureTerminologyLoaded(logic) == CARDIACQUAN_CONTEXT
    assert logic.IsTerminologyContextLoaded(CARDIACQUAN_CONTEXT)
    assert startup.ensureTerminologyLoaded(logic) == CARDIACQUAN_CONTEXT   # once
    assert startup.ensureTerminologyLoaded(None) is None
    entry = slicer.vtkSlicerTerminologyEntry()
    from CardiacQuanLib.segment_definitions import SECTOR_SEGMENTS_WITH_TERMINOLOGY
    assert logic.DeserializeTerminologyEntry(SECTOR_SEGMENTS_WITH_TERMINOLOGY[0][4], entry)
    assert entry.GetTypeObject().GetCodeValue() == "396649001"   # RWT1 = AHA 9, mid inferoseptal


def test_sector_segments_carry_six_distinct_aha_codes(done):
    from CardiacQuanLib.segment_definitions import AHA_SEGMENT_CODES

    segs = _segments(done.out.sectors)
    codes = [s.GetTerminology().split("~")[2].split("^")[1] for s in segs]
    assert len(set(codes)) == 6
    # RWT1..6 are AHA 9, 10, 11, 12, 7, 8 (contract.SECTOR_AHA_SEGMENTS), each with its own code
    assert codes == [AHA_SEGMENT_CODES[a] for a in contract.SECTOR_AHA_SEGMENTS]
    for s, aha in zip(segs, contract.SECTOR_AHA_SEGMENTS):
        assert f"(AHA {aha})" in s.GetName() and "mid" in s.GetTerminology()


def test_segments_are_tagged_with_how_they_were_made(done, module):
    from CardiacQuanLib.results_import import segmentTags

    for segNode in (done.out.segmentation, done.out.sectors,
                    done.out.segmentationSequence.GetNthDataNode(3)):
        for s in _segments(segNode):
            assert _tag(s, "DICOM.SegmentAlgorithmName") == "CardiacQuan"
            assert _tag(s, "DICOM.SegmentAlgorithmType") == "SEMIAUTOMATIC"   # masks were given
    assert segmentTags(False)["DICOM.SegmentAlgorithmType"] == "AUTOMATIC"      # the network's


def test_segmentations_reference_the_cine_frame_as_their_geometry(done):
    import slicer

    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    for segNode in (done.out.segmentation, done.out.sectors):
        ref = segNode.GetNodeReference(role)
        assert ref is done.proxy, (segNode.GetName(), ref)
    done.browser.SetSelectedItemNumber(5)   # the proxies change content, the reference stays
    assert done.out.segmentation.GetNodeReference(role) is done.proxy


# --------------------------------------------------------------------------------------
# results that follow the cine
# --------------------------------------------------------------------------------------
def _marker(out):
    t = out.curvesTable.GetTable()
    col = t.GetColumnByName("current_frame")
    frames = t.GetColumnByName("frame")
    return [int(frames.GetValue(r)) for r in range(t.GetNumberOfRows()) if not np.isnan(col.GetValue(r))]


def test_chart_marker_and_table_row_follow_the_browser(done):
    out = done.out
    assert any(out.chart.GetNthPlotSeriesNode(i).GetYColumnName() == "current_frame"
               for i in range(out.chart.GetNumberOfPlotSeriesNodes()))
    for item in (3, 0, 9):
        done.browser.SetSelectedItemNumber(item)
        assert _marker(out) == [item]
        assert out.indicesTable.GetAttribute("CardiacQuan.CurrentFrame") == str(item)
        row = int(out.indicesTable.GetAttribute("CardiacQuan.CurrentRow"))
        t = out.indicesTable.GetTable()
        shown = int(out.curvesTable.GetAttribute("CardiacQuan.Slice"))
        assert t.GetValueByName(row, "frame").ToInt() == item and t.GetValueByName(row, "slice").ToInt() == shown
        cav = out.curvesTable.GetTable().GetValueByName(item, "current_frame").ToDouble()
        assert cav == pytest.approx(t.GetValueByName(row, "cavity_area_mm2").ToDouble())


def test_go_to_ed_and_es_set_the_browser(done):
    out = done.out
    ed, es = (int(out.indicesTable.GetAttribute(a)) for a in ("CardiacQuan.EDFrame", "CardiacQuan.ESFrame"))
    assert ed != es
    assert done.logic.goToFrame(done.proxy, "ES") == es
    assert done.browser.GetSelectedItemNumber() == es and _marker(out) == [es]
    assert done.logic.goToFrame(done.seq, "ED") == ed
    assert done.browser.GetSelectedItemNumber() == ed and _marker(out) == [ed]
    # the segmentation the views show is ED's
    got = ss.segmentation_labels(out.segmentation, done.labels.shape[1:], _ijk(done.proxy))
    assert np.array_equal(got, done.labels[ed])


def _ijk(volume):
    import vtk

    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_results_layout_puts_chart_tables_and_bullseye_in_their_views(done):
    from CardiacQuanLib import cine_sync

    scene, out = done.scene, done.out
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == cine_sync.LAYOUT_ID   # shown when the run ended
    assert layout.IsLayoutDescription(cine_sync.LAYOUT_ID)
    root = layout.ParseLayout(layout.GetLayoutDescription(cine_sync.LAYOUT_ID))
    assert root is not None
    xml = layout.GetLayoutDescription(cine_sync.LAYOUT_ID)
    for tag in ('singletontag="Red"', 'class="vtkMRMLPlotViewNode"', cine_sync.INDICES_TABLE_VIEW,
                cine_sync.SEGMENTS_TABLE_VIEW, cine_sync.BULLSEYE_VIEW):
        assert tag in xml
    views = {scene.GetNthNodeByClass(i, "vtkMRMLTableViewNode").GetSingletonTag():
             scene.GetNthNodeByClass(i, "vtkMRMLTableViewNode") for i in range(2)}
    assert views["TableView1"].GetTableNodeID() == out.indicesTable.GetID()
    assert views["CardiacQuanSegmentsTable"].GetTableNodeID() == out.segmentsTable.GetID()
    plot = scene.GetFirstNodeByClass("vtkMRMLPlotViewNode")
    assert plot.GetPlotChartNodeID() == out.chart.GetID()
    sel = done.S.appLogic.GetSelectionNode()
    assert sel.GetActivePlotChartID() == out.chart.GetID() and sel.GetActiveTableID() == out.indicesTable.GetID()


# --------------------------------------------------------------------------------------
# issue 14 in Slicer: the AHA segments table and the bull's-eye
# --------------------------------------------------------------------------------------
def test_segments_table_equals_segments_csv_with_codes(done):
    import csv

    from CardiacQuanLib.segment_definitions import AHA_SEGMENT_CODES

    with open(os.path.join(done.outdir, contract.SEGMENTS_CSV), newline="") as f:
        rows = list(csv.DictReader(f))
    table = done.out.segmentsTable
    assert table is not None and table.GetNumberOfRows() == len(rows) == 16
    t = table.GetTable()
    names = [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())]
    assert names == list(contract.SEGMENTS_COLUMN_NAMES) + ["snomed_ct_code"]
    for r, row in enumerate(rows):
        assert t.GetValueByName(r, "segment").ToInt() == int(row["segment"])
        assert t.GetValueByName(r, "name").ToString() == row["name"]
        for col in ("thickness_ed_mm", "thickness_es_mm", "thickening_percent"):
            want = float(row[col]) if row[col] else float("nan")
            got = t.GetValueByName(r, col).ToDouble()
            assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want), (r, col)
        assert t.GetValueByName(r, "snomed_ct_code").ToString() == AHA_SEGMENT_CODES[int(row["segment"])]
    assert table.GetColumnUnitLabel("thickness_ed_mm") == "mm" and table.GetColumnUnitLabel("thickening_percent") == "%"


def test_bullseye_is_a_volume_with_the_engines_picture(done):
    from CardiacQuanLib.regional_import import readPng

    vol = done.out.bullseye
    assert vol is not None and vol.IsA("vtkMRMLVectorVolumeNode")
    png = readPng(os.path.join(done.outdir, contract.BULLSEYE_PNG))
    dims = vol.GetImageData().GetDimensions()
    assert (dims[1], dims[0], dims[2]) == (png.shape[0], png.shape[1], 1)
    import vtk.util.numpy_support as vtk_np

    a = vtk_np.vtk_to_numpy(vol.GetImageData().GetPointData().GetScalars()).reshape(png.shape)
    assert np.array_equal(a, png) and a.std() > 10   # a picture, not blank


def test_segments_table_and_bullseye_are_replaced_by_a_rerun_and_survive_a_scene_save(done, module, tmp_path):
    old = (done.out.segmentsTable.GetID(), done.out.bullseye.GetID())
    again = done.logic.requantify(done.proxy)
    done.out = again
    assert done.scene.GetNodeByID(old[0]) is None and done.scene.GetNodeByID(old[1]) is None
    assert again.segmentsTable.GetScene() is done.scene and again.bullseye.GetScene() is done.scene
    path = done.S.save_mrb(str(tmp_path / "regional.mrb"))
    loaded = ss.SlicerScene.load_mrb(path)
    try:
        logic2 = module.CardiacQuanLogic(scene=loaded.scene, appLogic=loaded.appLogic)
        out2 = logic2.findOutputs(loaded.scene.GetFirstNode("Cine", "vtkMRMLScalarVolumeNode"))
        assert out2.segmentsTable.GetNumberOfRows() == 16 and out2.bullseye.GetImageData() is not None
        # after loading, the results follow the cine again
        logic2.followResults(out2)
        logic2.goToFrame(out2.indicesTable, "ES")
        es = int(out2.indicesTable.GetAttribute("CardiacQuan.ESFrame"))
        assert _marker(out2) == [es]
        import slicer

        role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
        assert out2.segmentation.GetNodeReference(role) is not None
    finally:
        loaded.close()


# --------------------------------------------------------------------------------------
# startup: terminology and Sample Data; the sample cine
# --------------------------------------------------------------------------------------
def test_module_registers_the_sample_cine_with_sample_data_at_startup(module, monkeypatch):
    """As in Slicer: the module connects to startupCompleted(); then the sample is registered with
    SampleData.SampleDataLogic.registerCustomSampleDataSource (stood in here: SampleData is an
    application module) and the terminology is loaded."""
    import slicer

    from CardiacQuanLib import startup

    registered, connected = [], []
    sampleData = types.ModuleType("SampleData")
    sampleData.SampleDataLogic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **k: registered.append(k))
    monkeypatch.setitem(sys.modules, "SampleData", sampleData)
    import slicer_stubs

    app = slicer_stubs.Application()           # the application stand-in, recording its connections
    monkeypatch.setattr(app, "connect", lambda signal, slot: connected.append((signal, slot)), raising=False)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    module.CardiacQuan(types.SimpleNamespace(path=ss.MODULE_FILE))
    assert [s for s, _ in connected] == ["startupCompleted()"]
    connected[0][1]()
    assert len(registered) == 1
    src = registered[0]
    assert src["category"] == "Cardiac" and src["loadFileTypes"] == "SequenceFile"
    assert src["uris"].startswith("file://")
    from urllib.request import url2pathname
    from urllib.parse import urlparse

    path = url2pathname(urlparse(src["uris"]).path)
    assert os.path.samefile(path, startup.sampleCinePath())
    assert src["fileNames"] == os.path.basename(path)
    assert src["checksums"] == "SHA256:" + startup.sha256(path)
    assert os.path.isfile(src["thumbnailFileName"])


def test_sample_cine_is_a_real_short_axis_cine_with_geometry_and_times():
    from cardiacquan.io.files import read_cine

    path = os.path.join(ss.MODULE_DIR, "Resources", *contract.SAMPLE_CINE)
    assert os.path.getsize(path) < 5.5e6
    cine = read_cine(path)
    assert cine.image.shape == (20, 12, 144, 144)
    assert cine.times_known and np.all(np.diff(cine.times_ms) > 0) and 700 < cine.times_ms[-1] < 800
    assert cine.spacing == pytest.approx((1.367188, 1.367188), abs=1e-4)
    assert np.allclose(np.diff(cine.origins, axis=0) @ cine.normal, 10.0, atol=0.01)   # 10 mm apart
    assert float(cine.image.max()) > 300 and np.array_equal(cine.image, np.round(cine.image))
    readme = open(os.path.join(os.path.dirname(path), "README.md"), encoding="utf-8").read()
    for text in ("Sunnybrook", "Radau", "MIDAS", "CC0"):
        assert text in readme
    dicom = os.path.join(ss.REPO, "..", "shared", "data", "sunnybrook", "dicoms", "SCD0000101")
    if not os.path.isdir(dicom):
        pytest.skip("../shared/data not present (user clone): the crop is checked against the DICOM study there")
    full = read_cine(dicom)
    # the crop's pixels and geometry are the study's: find the crop offset from the origins
    d = np.asarray(full.direction)
    offset = np.linalg.lstsq(d[:, :2] * np.array([full.spacing[1], full.spacing[0]]),
                             cine.origins[0] - full.origins[0], rcond=None)[0]
    c0, r0 = (int(round(v)) for v in offset)
    assert np.array_equal(cine.image, full.image[:, :, r0:r0 + 144, c0:c0 + 144])
    assert np.allclose(cine.times_ms, full.times_ms, atol=1e-3)


def test_demo_runs_the_sample_by_default_and_the_phantom_on_request():
    from cardiacquan import cli
    from cardiacquan.models import sample_cine_path

    assert sample_cine_path().is_file()
    args = cli.build_parser().parse_args(["demo", "-o", "x"])
    assert args.phantom is False and args.func is cli.cmd_demo
    assert cli.build_parser().parse_args(["demo", "--phantom", "--slices-count", "3"]).phantom is True
    q = cli.build_parser().parse_args(["quantify", "in.nii.gz", "-o", "out", "--no-figures", "--bullseye"])
    assert q.no_figures and q.bullseye
