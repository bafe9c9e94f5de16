"""Results that follow the cine: the chart's current-frame marker, the table's current row, going
to ED/ES, and the results layout (cine beside chart, tables and bull's-eye).

The cine's sequence browser is the one clock: playing or scrubbing it (or goToFrame) changes its
selected item, and a ``ResultsFollower`` observing the browser moves the chart's "current frame"
marker (a column of the area-curves table that holds the cavity area at the current frame and
NaN elsewhere) and records the current frame and table row on the indices table
(ATTRIBUTE_CURRENT_FRAME / ATTRIBUTE_CURRENT_ROW).  Inside the application the table views that
show the indices table select that row as well.

Everything here but the table-view row selection and the slice views' content works on MRML
alone (slicer-core): tested without the application.
"""
import math

import vtk

import slicer
from cardiacquan.contract import FRAME_COLUMN, INDEX_COLUMN, SLICE_COLUMN

from CardiacQuanLib.application import inSlicerApplication
from CardiacQuanLib.indices_table import ATTRIBUTE_ED_INDEX_VALUE, ATTRIBUTE_ES_INDEX_VALUE, toInt
from CardiacQuanLib.output_registry import inputOf

CURRENT_COLUMN = "current_frame"
ATTRIBUTE_CURRENT_FRAME = "CardiacQuan.CurrentFrame"
ATTRIBUTE_CURRENT_ROW = "CardiacQuan.CurrentRow"
CURVES_SLICE_ATTRIBUTE = "CardiacQuan.Slice"

#: the results layout: the cine's Red slice view on the left; on the right the area chart above
#: the indices table, the AHA segments table and the bull's-eye
LAYOUT_ID = 18640
BULLSEYE_VIEW = "CardiacQuanBullseye"
INDICES_TABLE_VIEW = "TableView1"
SEGMENTS_TABLE_VIEW = "CardiacQuanSegmentsTable"
PLOT_VIEW = "PlotView1"
LAYOUT_XML = f"""
<layout type="horizontal" split="true">
 <item splitSize="500">
  <view class="vtkMRMLSliceNode" singletontag="Red">
   <property name="orientation" action="default">Axial</property>
   <property name="viewlabel" action="default">R</property>
   <property name="viewcolor" action="default">#F34A33</property>
  </view>
 </item>
 <item splitSize="600">
  <layout type="vertical" split="true">
   <item splitSize="400">
    <view class="vtkMRMLPlotViewNode" singletontag="{PLOT_VIEW}">
     <property name="viewlabel" action="default">P</property>
    </view>
   </item>
   <item splitSize="300">
    <layout type="horizontal" split="true">
     <item splitSize="400">
      <view class="vtkMRMLTableViewNode" singletontag="{INDICES_TABLE_VIEW}">
       <property name="viewlabel" action="default">T</property>
      </view>
     </item>
     <item splitSize="300">
      <view class="vtkMRMLTableViewNode" singletontag="{SEGMENTS_TABLE_VIEW}">
       <property name="viewlabel" action="default">S</property>
      </view>
     </item>
     <item splitSize="300">
      <view class="vtkMRMLSliceNode" singletontag="{BULLSEYE_VIEW}">
       <property name="orientation" action="default">Axial</property>
       <property name="viewlabel" action="default">B</property>
       <property name="viewcolor" action="default">#808080</property>
      </view>
     </item>
    </layout>
   </item>
  </layout>
 </item>
</layout>
"""


def cineFrameOfBrowser(browser, cineSequence):
    """The cine frame (0-based, the cine sequence's item number) the browser shows, or None."""
    if browser is None or cineSequence is None:
        return None
    master = browser.GetMasterSequenceNode()
    item = browser.GetSelectedItemNumber()
    if master is None or item < 0:
        return None
    if master is cineSequence:
        return item
    frame = cineSequence.GetItemNumberFromIndexValue(master.GetNthIndexValue(item))
    return frame if frame >= 0 else None


def browserItemOfFrame(browser, cineSequence, indexValue):
    """The browser's item number that shows the cine frame with `indexValue`, or -1."""
    master = browser.GetMasterSequenceNode() if browser is not None else None
    if master is None or indexValue in (None, ""):
        return -1
    return master.GetItemNumberFromIndexValue(indexValue)


def tableRowOf(indicesTable, sliceIndex, frame):
    """Row of (slice, frame) in the indices table, or -1."""
    t = indicesTable.GetTable()
    sliceCol, frameCol = t.GetColumnByName(SLICE_COLUMN), t.GetColumnByName(FRAME_COLUMN)
    if sliceCol is None or frameCol is None or frame is None:
        return -1
    for r in range(t.GetNumberOfRows()):
        if sliceCol.GetVariantValue(r).ToInt() == sliceIndex and frameCol.GetVariantValue(r).ToInt() == frame:
            return r
    return -1


def setCurrentFrame(curvesTable, indicesTable, frame):
    """Move the chart's marker and the table's current row to `frame` (None: no current frame)."""
    if curvesTable is not None:
        t = curvesTable.GetTable()
        marker, frames = t.GetColumnByName(CURRENT_COLUMN), t.GetColumnByName(FRAME_COLUMN)
        cavity = t.GetColumnByName(INDEX_COLUMN["A1"])
        if marker is not None and frames is not None and cavity is not None:
            for r in range(t.GetNumberOfRows()):
                hit = frame is not None and int(frames.GetValue(r)) == frame
                marker.SetValue(r, cavity.GetValue(r) if hit else math.nan)
            marker.Modified()
            curvesTable.Modified()
    if indicesTable is not None:
        shownSlice = toInt(curvesTable.GetAttribute(CURVES_SLICE_ATTRIBUTE)) if curvesTable is not None else None
        row = tableRowOf(indicesTable, shownSlice, frame) if shownSlice is not None else -1
        indicesTable.SetAttribute(ATTRIBUTE_CURRENT_FRAME, "" if frame is None else str(frame))
        indicesTable.SetAttribute(ATTRIBUTE_CURRENT_ROW, str(row))
        if row >= 0:
            selectTableRowInViews(indicesTable, row)


def selectTableRowInViews(table, row):
    """Select `row` in the application's table views that show `table` (nothing outside the application)."""
    if not inSlicerApplication():
        return
    layoutManager = slicer.app.layoutManager() if hasattr(slicer.app, "layoutManager") else None
    if layoutManager is None:
        return
    for i in range(layoutManager.tableViewCount):
        widget = layoutManager.tableWidget(i)
        view = widget.tableView() if widget is not None else None
        if view is not None and view.mrmlTableNode() is table:
            view.selectRow(row)


def goToFrame(browser, cineSequence, indicesTable, which):
    """Set the browser to the study's ED or ES frame (which: "ED" or "ES"); returns the item number."""
    attribute = {"ED": ATTRIBUTE_ED_INDEX_VALUE, "ES": ATTRIBUTE_ES_INDEX_VALUE}[which]
    item = browserItemOfFrame(browser, cineSequence, indicesTable.GetAttribute(attribute) if indicesTable else None)
    if item >= 0:
        browser.SetSelectedItemNumber(item)
    return item


class ResultsFollower:
    """Observes a cine's browser and keeps the chart marker and table row on the current frame."""

    def __init__(self, browser, cineSequence, curvesTable, indicesTable):
        self.browser, self.cineSequence = browser, cineSequence
        self.curvesTable, self.indicesTable = curvesTable, indicesTable
        self.lastFrame = "unset"
        self._tag = browser.AddObserver(vtk.vtkCommand.ModifiedEvent, self.onBrowserModified)
        self.update()

    def alive(self):
        nodes = (self.browser, self.cineSequence, self.curvesTable, self.indicesTable)
        return all(n is not None and n.GetScene() is not None for n in nodes)

    def onBrowserModified(self, caller=None, event=None):
        if not self.alive():
            self.stop()
            return
        self.update()

    def update(self):
        frame = cineFrameOfBrowser(self.browser, self.cineSequence)
        if frame != self.lastFrame:
            self.lastFrame = frame
            setCurrentFrame(self.curvesTable, self.indicesTable, frame)

    def stop(self):
        if self._tag is not None and self.browser is not None:
            self.browser.RemoveObserver(self._tag)
        self._tag = None


def registerLayout(layoutNode):
    """Add the results layout to a layout node (once); returns LAYOUT_ID."""
    if layoutNode is not None and not layoutNode.IsLayoutDescription(LAYOUT_ID):
        layoutNode.AddLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    return LAYOUT_ID


def showResultsLayout(scene, appLogic, outputs):
    """Switch to the results layout and put the chart, tables and bull's-eye in its views.

    MRML only: the layout node's arrangement, the selection node's active table and chart
    (propagated to the views that exist), the view nodes named in the layout where they exist.
    """
    layoutNode = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layoutNode is not None:
        registerLayout(layoutNode)
        layoutNode.SetViewArrangement(LAYOUT_ID)
    selection = appLogic.GetSelectionNode() if appLogic is not None else None
    if selection is not None:
        if outputs.chart is not None:
            selection.SetActivePlotChartID(outputs.chart.GetID())
            appLogic.PropagatePlotChartSelection()
        if outputs.indicesTable is not None:
            selection.SetActiveTableID(outputs.indicesTable.GetID())
            appLogic.PropagateTableSelection()
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTableViewNode")):
        view = scene.GetNthNodeByClass(i, "vtkMRMLTableViewNode")
        tag = view.GetSingletonTag() or view.GetLayoutName()
        table = outputs.segmentsTable if tag == SEGMENTS_TABLE_VIEW else outputs.indicesTable if tag == INDICES_TABLE_VIEW else None
        if table is not None:
            view.SetTableNodeID(table.GetID())
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLPlotViewNode")):
        view = scene.GetNthNodeByClass(i, "vtkMRMLPlotViewNode")
        if outputs.chart is not None and (view.GetSingletonTag() or view.GetLayoutName()) == PLOT_VIEW:
            view.SetPlotChartNodeID(outputs.chart.GetID())
    showBullseyeInView(outputs.bullseye)


def showBullseyeInView(volume):
    """Show the bull's-eye volume in the layout's bull's-eye slice view (application only)."""
    if volume is None or not inSlicerApplication():
        return
    layoutManager = slicer.app.layoutManager() if hasattr(slicer.app, "layoutManager") else None
    widget = layoutManager.sliceWidget(BULLSEYE_VIEW) if layoutManager is not None else None
    if widget is None:
        return
    logic = widget.sliceLogic()
    logic.GetSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
    logic.GetSliceCompositeNode().SetForegroundVolumeID(None)
    logic.GetSliceCompositeNode().SetLabelVolumeID(None)
    logic.FitSliceToBackground()


def cineSequenceOf(outputs):
    """The cine's volume sequence of a run's outputs: the input sequence, or (4-D input) the copy of
    its frames that the module's browser plays."""
    owner = inputOf(outputs.indicesTable) if outputs.indicesTable is not None else None
    if owner is not None and owner.IsA("vtkMRMLSequenceNode"):
        return owner
    return outputs.browser.GetMasterSequenceNode() if outputs.browser is not None else None
