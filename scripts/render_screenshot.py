#!/usr/bin/env python
"""Render the README screenshot of the Slicer module from a real MRML scene, offscreen.

    python scripts/render_screenshot.py                 # the sample cine (real MRI) -> docs/screenshot.png
    python scripts/render_screenshot.py --phantom       # a phantom cine, from its masks (fast; the tests)
    python scripts/render_screenshot.py --icon          # also redraw CardiacQuan/Resources/Icons/CardiacQuan.png

What it does: builds a scene with Slicer's MRML classes and module logics (slicer-core), loads the
extension's sample cine (Sunnybrook Cardiac Data, CC0; contract.SAMPLE_CINE) as a volume sequence
with a browser, runs the module's Logic (the engine segments it with the network in its own
process, as in Slicer), goes to end-systole (Logic.goToFrame, as the "Go to ES" button), then draws
the module's results layout: a slice view rendered with Slicer's own slice logic and displayable
managers (cine + LV segmentation + RWT sectors, the cine's slice plane in the standard short-axis
orientation: seen from the apex, anterior up, RV on the left), the plot chart the run created (its
MRML chart / series / table nodes, the current-frame marker included) drawn with VTK charts --
what Slicer's plot view does, without its Qt widget --, the AHA segments table node and the
bull's-eye volume node, with a colour legend.  Headless Linux: VTK's EGL render window (Mesa's
software renderer works).

This process never imports TensorFlow: VTK's OpenGL rendering crashes in a process that did.
With --phantom the engine runs the given-masks path (no network) unless --network is passed.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
    # no X server: go straight to VTK's headless EGL window (Mesa or GPU) instead of trying X first
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
sys.path.insert(0, os.path.join(REPO, "Testing"))
sys.path.insert(0, os.path.join(REPO, "CardiacQuan"))

# RWT1..RWT6 colours, as the module's sectors (CardiacQuan.SECTOR_SEGMENTS)
SECTOR_COLORS = [(0.89, 0.10, 0.11), (1.00, 0.50, 0.00), (1.00, 0.85, 0.20),
                 (0.30, 0.69, 0.29), (0.22, 0.49, 0.72), (0.60, 0.31, 0.64)]


def draw_icon(path, size=128):
    """The module icon: a short-axis LV ring split in the six coloured RWT sectors, RV on the left."""
    from PIL import Image

    ss = 4  # supersampling for smooth edges
    n = size * ss
    y, x = np.mgrid[0:n, 0:n].astype(float) + 0.5
    cx, cy = n * 0.57, n * 0.5
    dx, dy = (x - cx) / n, -(y - cy) / n          # display y up
    r = np.hypot(dx, dy)
    theta = np.degrees(np.arctan2(dy, dx)) % 360.0
    rgba = np.zeros((n, n, 4), float)
    # rounded-square dark background
    m = 0.06
    bx = np.maximum(np.abs(x / n - 0.5) - (0.5 - m - 0.10), 0)
    by = np.maximum(np.abs(y / n - 0.5) - (0.5 - m - 0.10), 0)
    bg = np.hypot(bx, by) <= 0.10
    rgba[bg] = (0.10, 0.12, 0.16, 1.0)
    # RV crescent on the septum side (left)
    rvx, rvy = (x - (cx - 0.16 * n)) / n, -(y - cy) / n
    rv = (np.hypot(rvx / 0.27, rvy / 0.30) < 1.0) & (r > 0.335) & bg
    rgba[rv] = (0.25, 0.45, 0.90, 1.0)
    # myocardium ring in six sectors: RWT1 at 180-240 deg, counter-clockwise, septum at 180 deg
    ring = (r >= 0.16) & (r <= 0.31)
    for k, color in enumerate(SECTOR_COLORS):
        lo = (180.0 + 60.0 * k) % 360.0
        sel = ring & (((theta - lo) % 360.0) < 60.0)
        rgba[sel] = (*color, 1.0)
    # thin dark gaps between sectors
    for k in range(6):
        a = np.radians(180.0 + 60.0 * k)
        dist = np.abs(dx * np.sin(a) - dy * np.cos(a))
        along = dx * np.cos(a) + dy * np.sin(a)
        rgba[ring & (dist < 0.008) & (along > 0)] = (0.10, 0.12, 0.16, 1.0)
    # cavity
    rgba[r < 0.16] = (0.90, 0.25, 0.25, 1.0)
    img = (rgba.reshape(size, ss, size, ss, 4).mean(axis=(1, 3)) * 255).round().astype(np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(img, "RGBA").save(path)
    return path


# --------------------------------------------------------------------------------------
# the scene
# --------------------------------------------------------------------------------------
def sample_cine():
    """(image, labels None, ijk, times, source) of the extension's sample cine."""
    import slicer_scene as ss
    from cardiacquan.contract import SAMPLE_CINE
    from cardiacquan.io.files import read_cine

    cine = read_cine(os.path.join(REPO, "CardiacQuan", "Resources", *SAMPLE_CINE))
    ijk = ss.ijk_to_ras_from_geometry(cine.spacing, cine.origins, cine.direction)
    return (cine.image, None, ijk, cine.times_ms,
            "Sunnybrook Cardiac Data SC-HF-I-1 (CC0, Radau et al. 2009)")


def build_scene(network=False, n_frames=16, n_slices=5, phantom=False):
    import slicer_scene as ss

    module = ss.load_module()
    S = ss.SlicerScene()
    if phantom:
        image, labels, ijk, times, source = ss.phantom(seed=7, n_frames=n_frames, n_slices=n_slices)
        name = "Phantom cine"
    else:
        image, labels, ijk, times, source = sample_cine()
        name, network = "Sunnybrook cine", True
    proxy, seq, browser = ss.add_cine_sequence(S.scene, image, ijk, times, name)
    logic = module.CardiacQuanLogic(scene=S.scene, appLogic=S.appLogic)
    if not ss.real_engine_available():
        fake = ss.write_fake_engine(tempfile.mkdtemp(prefix="cq-fake-engine-"))
        logic.engineModule, logic.enginePythonPaths = "cqfake", [fake, ss.MODULE_DIR]
        print("note: the cardiacquan engine's CLI is missing; using the test stand-in engine", file=sys.stderr)
    out = logic.quantify(proxy, slices="all", labels=None if network else labels,
                         progressCallback=lambda d, t, m: print(f"\r  {m}   ", end="", file=sys.stderr))
    print(file=sys.stderr)
    return S, module, logic, out, dict(proxy=proxy, seq=seq, browser=browser, ijk=ijk, image=image, labels=labels,
                                       source=source, network=network)


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------
def render_slice_view(S, proxy, sliceIndex, ijk, centreIJ=None, fovMm=130.0, size=(560, 560)):
    """Render the Red slice view with Slicer's slice logic and displayable managers; returns RGB array."""
    import slicer
    import vtk
    from vtkmodules.vtkRenderingCore import vtkActor2D, vtkImageMapper
    import vtk.util.numpy_support as vtk_np

    scene, app = S.scene, S.appLogic
    # layer 0: the resliced image (what CTK's light-box renderer manager draws in Slicer);
    # layer 1: the displayable managers (segmentation overlays, ruler), blended over it
    imageRenderer = vtk.vtkRenderer()
    imageRenderer.SetLayer(0)
    renderer = vtk.vtkRenderer()
    renderer.SetLayer(1)
    renderer.GetActiveCamera().ParallelProjectionOn()
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.SetMultiSamples(0)
    window.SetNumberOfLayers(2)
    window.AddRenderer(imageRenderer)
    window.AddRenderer(renderer)
    interactor = vtk.vtkRenderWindowInteractor()
    interactor.SetRenderWindow(window)

    factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(app)
    for name in ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLCrosshairDisplayableManager",
                 "vtkMRMLRulerDisplayableManager", "vtkMRMLOrientationMarkerDisplayableManager"):
        if not factory.IsDisplayableManagerRegistered(name):
            factory.RegisterDisplayableManager(name)
    group = slicer.vtkMRMLDisplayableManagerGroup()
    group.Initialize(factory, renderer)

    sliceLogic = slicer.vtkMRMLSliceLogic()
    sliceLogic.SetMRMLApplicationLogic(app)
    sliceLogic.SetMRMLScene(scene)
    app.GetSliceLogics().AddItem(sliceLogic)
    sliceNode = sliceLogic.AddSliceNode("Red")
    group.SetMRMLDisplayableNode(sliceNode)
    sliceNode.SetRulerType(slicer.vtkMRMLAbstractViewNode.RulerTypeThin)

    sliceLogic.GetSliceCompositeNode().SetBackgroundVolumeID(proxy.GetID())
    sliceLogic.ResizeSliceNode(*size)
    sliceLogic.FitSliceToBackground()
    if centreIJ is None:
        centreIJ = (ijk_dims(proxy)[0] / 2 - 0.5, ijk_dims(proxy)[1] / 2 - 0.5)
    centre = ijk @ np.array([centreIJ[0], centreIJ[1], sliceIndex, 1.0])
    # the cine's slice plane, in the standard short-axis display (see standard_short_axis_axes)
    X, Y, Z = standard_short_axis_axes(ijk)
    m = sliceNode.GetSliceToRAS()
    for r in range(3):
        m.SetElement(r, 0, X[r])
        m.SetElement(r, 1, Y[r])
        m.SetElement(r, 2, Z[r])
        m.SetElement(r, 3, centre[r])
    sliceNode.UpdateMatrices()
    fov = sliceNode.GetFieldOfView()
    sliceNode.SetFieldOfView(fovMm, fovMm * size[1] / size[0], fov[2])
    sliceNode.UpdateMatrices()

    mapper = vtkImageMapper()
    mapper.SetColorWindow(255)
    mapper.SetColorLevel(127.5)
    actor = vtkActor2D()
    actor.SetMapper(mapper)
    actor.GetProperty().SetDisplayLocationToBackground()
    imageRenderer.AddViewProp(actor)
    dn = proxy.GetDisplayNode()
    dn.SetAutoWindowLevel(False)
    lo, hi = np.percentile(vtk_np.vtk_to_numpy(proxy.GetImageData().GetPointData().GetScalars()), [1, 99.5])
    dn.SetWindowLevelMinMax(float(lo), float(hi))
    sliceLogic.UpdatePipeline() if hasattr(sliceLogic, "UpdatePipeline") else None
    mapper.SetInputConnection(sliceLogic.GetImageDataConnection())
    renderer.ResetCamera()
    window.Render()
    group.RequestRender() if hasattr(group, "RequestRender") else None
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    img = grab.GetOutput()
    w, h, _ = img.GetDimensions()
    a = vtk_np.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3]
    return np.ascontiguousarray(a)


def standard_short_axis_axes(ijk):
    """Screen axes (RAS) of the standard cardiac short-axis display of the cine's slice plane.

    As a cardiologist reads a short-axis view: seen from the apex, anterior up, so the RV is on
    the left of the screen.  Y (screen up) = anterior projected in the plane; the viewer looks
    along the long axis from the apex (V = base->apex, the slice normal signed towards the
    patient's left-anterior-inferior); X (screen right) = Y x V.  Slicer's slice matrices have
    the slice normal Z = -(X x Y) (left-handed, as its axial/coronal presets).
    """
    n = np.asarray(ijk, float)[:3, 2]
    n = n / np.linalg.norm(n)
    v = n if n @ np.array([-1.0, 1.0, -1.0]) >= 0 else -n   # base -> apex: towards left, anterior, inferior
    anterior = np.array([0.0, 1.0, 0.0])
    y = anterior - (anterior @ v) * v
    if np.linalg.norm(y) < 1e-6:  # plane containing the A-P axis: fall back on superior
        y = np.array([0.0, 0.0, 1.0]) - v[2] * v
    y /= np.linalg.norm(y)
    x = np.cross(y, v)
    return x, y, -np.cross(x, y)


def engine_is_real():
    import slicer_scene as ss

    return ss.real_engine_available()


def ijk_dims(volume):
    return volume.GetImageData().GetDimensions()


def render_chart(chart, size=(720, 560), prefix=""):
    """Draw a MRML plot chart (its series and their table columns) with VTK charts; returns RGB array."""
    import slicer
    import vtk
    import vtk.util.numpy_support as vtk_np

    view = vtk.vtkContextView()
    view.GetRenderWindow().SetOffScreenRendering(1)
    view.GetRenderWindow().SetSize(*size)
    view.GetRenderer().SetBackground(1, 1, 1)
    xy = vtk.vtkChartXY()
    view.GetScene().AddItem(xy)
    xy.SetShowLegend(True)
    xy.GetLegend().SetHorizontalAlignment(vtk.vtkChartLegend.RIGHT)
    xy.GetLegend().SetVerticalAlignment(vtk.vtkChartLegend.BOTTOM)
    xy.SetTitle(chart.GetTitle())
    xy.GetTitleProperties().SetFontSize(15)
    xy.GetAxis(vtk.vtkAxis.BOTTOM).SetTitle(chart.GetXAxisTitle())
    xy.GetAxis(vtk.vtkAxis.LEFT).SetTitle(chart.GetYAxisTitle())
    markers = {slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle: vtk.vtkPlotPoints.CIRCLE,
               slicer.vtkMRMLPlotSeriesNode.MarkerStyleSquare: vtk.vtkPlotPoints.SQUARE,
               slicer.vtkMRMLPlotSeriesNode.MarkerStyleDiamond: vtk.vtkPlotPoints.DIAMOND,
               slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone: vtk.vtkPlotPoints.NONE}
    for i in range(chart.GetNumberOfPlotSeriesNodes()):
        s = chart.GetNthPlotSeriesNode(i)
        table = s.GetTableNode().GetTable()
        # the systole band is drawn as separate runs so it does not bridge diastolic frames
        plot = xy.AddPlot(vtk.vtkChart.LINE if s.GetLineStyle() != slicer.vtkMRMLPlotSeriesNode.LineStyleNone
                          else vtk.vtkChart.POINTS)
        plot.SetInputData(table, s.GetXColumnName(), s.GetYColumnName())
        r, g, b = s.GetColor()
        plot.SetColor(int(r * 255), int(g * 255), int(b * 255), 255)
        plot.SetWidth(max(s.GetLineWidth(), 1.0))
        name = s.GetName()
        plot.SetLabel(name[len(prefix):].strip() if prefix and name.startswith(prefix) else name)
        if hasattr(plot, "SetMarkerStyle"):
            plot.SetMarkerStyle(markers.get(s.GetMarkerStyle(), vtk.vtkPlotPoints.CIRCLE))
            plot.SetMarkerSize(s.GetMarkerSize())
    view.GetRenderWindow().Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(view.GetRenderWindow())
    grab.Update()
    img = grab.GetOutput()
    w, h, _ = img.GetDimensions()
    return np.ascontiguousarray(vtk_np.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3])


def compose(slice_rgb, chart_rgb, title, caption, path, legend=(), bottom=()):
    """The results layout: slice view | chart, under them the bottom pictures (segments table |
    bull's-eye) side by side, a title, a colour legend of the overlays, a caption.

    legend: (name, (r, g, b) in 0..1) pairs, drawn under the two panels."""
    from PIL import Image, ImageDraw, ImageFont

    pad = 16
    h = max(slice_rgb.shape[0], chart_rgb.shape[0])
    hb = max((b.shape[0] for b in bottom), default=0)
    W = slice_rgb.shape[1] + chart_rgb.shape[1] + 3 * pad
    legendRows = (len(legend) + 2) // 3
    top = pad + 40
    legendTop = top + h + 8
    bottomTop = legendTop + 24 * legendRows + 8
    H = bottomTop + hb + (pad if hb else 0) + 40
    canvas = Image.new("RGB", (W, H), (34, 36, 40))
    canvas.paste(Image.fromarray(slice_rgb), (pad, top))
    canvas.paste(Image.fromarray(chart_rgb), (2 * pad + slice_rgb.shape[1], top))
    x = pad
    for b in bottom:
        canvas.paste(Image.fromarray(np.ascontiguousarray(b)), (x, bottomTop))
        x += b.shape[1] + pad
    d = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 17)
        small = ImageFont.truetype("DejaVuSans.ttf", 14)
    except OSError:
        font = small = ImageFont.load_default()
    d.text((pad, pad + 6), title, fill=(235, 235, 235), font=font)
    colW = (W - 2 * pad) // 3
    for i, (name, color) in enumerate(legend):
        x0 = pad + (i % 3) * colW
        y0 = legendTop + 24 * (i // 3)
        d.rectangle([x0, y0 + 2, x0 + 14, y0 + 16], fill=tuple(int(round(255 * c)) for c in color))
        d.text((x0 + 22, y0), name, fill=(225, 225, 225), font=small)
    d.text((pad, H - pad - 20), caption, fill=(190, 190, 190), font=small)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    canvas.save(path)
    return path


def table_picture(table, size=(560, 330)):
    """The AHA segments table node drawn as text rows (what Slicer's table view lists); RGB array."""
    from PIL import Image, ImageDraw, ImageFont

    t = table.GetTable()
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 13)
        bold = ImageFont.truetype("DejaVuSans-Bold.ttf", 13)
    except OSError:
        font = bold = ImageFont.load_default()
    cols = [("segment", "AHA", 8), ("level", "level", 48), ("name", "segment name", 112),
            ("thickness_ed_mm", "ED (mm)", 262), ("thickness_es_mm", "ES (mm)", 342),
            ("thickening_percent", "thickening (%)", 422)]
    d.rectangle([0, 0, size[0], 20], fill=(230, 233, 238))
    for _, header, x in cols:
        d.text((x, 3), header, fill=(20, 20, 20), font=bold)
    for r in range(t.GetNumberOfRows()):
        y = 22 + 19 * r
        if r % 2:
            d.rectangle([0, y - 1, size[0], y + 17], fill=(246, 247, 249))
        for name, _, x in cols:
            v = t.GetValueByName(r, name)
            text = f"{v.ToDouble():.1f}" if name.endswith(("_mm", "_percent")) else v.ToString()
            d.text((x, y), text, fill=(20, 20, 20), font=font)
    return np.asarray(img)


def volume_picture(volume, width):
    """An RGB volume node's pixels (the bull's-eye), top row first, scaled to `width`; RGB array."""
    import vtk.util.numpy_support as vtk_np
    from PIL import Image

    nx, ny, _ = volume.GetImageData().GetDimensions()
    a = vtk_np.vtk_to_numpy(volume.GetImageData().GetPointData().GetScalars()).reshape(ny, nx, -1)[..., :3]
    im = Image.fromarray(np.ascontiguousarray(a))
    return np.asarray(im.resize((width, int(round(ny * width / nx))), Image.LANCZOS))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", default=os.path.join(REPO, "docs", "screenshot.png"))
    ap.add_argument("--icon", action="store_true", help="also redraw the module icon")
    ap.add_argument("--phantom", action="store_true", help="a phantom cine instead of the sample (fast, for tests)")
    ap.add_argument("--network", action="store_true", help="phantom: segment with the network instead of its masks")
    a = ap.parse_args(argv)
    if a.icon:
        print("icon:", draw_icon(os.path.join(REPO, "CardiacQuan", "Resources", "Icons", "CardiacQuan.png")))
    if "tensorflow" in sys.modules:
        raise SystemExit("TensorFlow is imported in this process; VTK rendering would crash")
    import slicer_scene as ss

    S, module, logic, out, info = build_scene(network=a.network, phantom=a.phantom)
    table = out.indicesTable
    es = int(table.GetAttribute("CardiacQuan.ESFrame"))
    mid = int(table.GetAttribute("CardiacQuan.MidSlice"))
    logic.goToFrame(info["proxy"], "ES")  # as the Go to ES button: the proxies, marker and table row follow
    shape = info["image"].shape[1:]
    labels = ss.segmentation_labels(out.segmentation, shape, info["ijk"])
    lv = np.argwhere(labels[mid] > 0)  # heart centre (rows, cols) on the shown slice
    centreIJ = (lv[:, 1].mean(), lv[:, 0].mean()) if lv.size else None
    slice_rgb = render_slice_view(S, info["proxy"], mid, info["ijk"], centreIJ, fovMm=120.0 if not a.phantom else 130.0)
    chart_rgb = render_chart(out.chart, prefix=info["proxy"].GetName())
    bottom = []
    if out.segmentsTable is not None:
        bottom.append(table_picture(out.segmentsTable, (slice_rgb.shape[1], 330)))
    if out.bullseye is not None:
        bottom.append(volume_picture(out.bullseye, chart_rgb.shape[1]))
    vol = json.loads(table.GetAttribute("CardiacQuan.Volumes") or "{}")
    ef = f", EF {vol['ef_percent']:.0f} %" if vol.get("ef_percent") is not None else ""
    title = (f"CardiacQuan results layout at end-systole (frame {es}{ef}): mid slice {mid}, area chart with the "
             "current frame, AHA segments")
    caption = (f"{info['source']}; masks: {'network' if info['network'] else 'phantom labels'}; engine: "
               f"{'cardiacquan' if engine_is_real() else 'test stand-in'}; rendered offscreen from MRML by "
               "scripts/render_screenshot.py")
    legend = [(name, color) for _, _, name, color, _ in module.TISSUE_SEGMENTS if name != "LV myocardium"]
    legend += [(name, color) for _, _, name, color in module.SECTOR_SEGMENTS]
    print("screenshot:", compose(slice_rgb, chart_rgb, title, caption, a.output, legend, bottom))


if __name__ == "__main__":
    main()
