"""Which nodes the module made, for which cine; finding and removing them; undoing a failed import.

Every output carries the attribute ROLE_ATTRIBUTE (what it is) and a reference INPUT_REFERENCE_ROLE
to the cine it belongs to (the "owner": the volume sequence, or the 4-D volume).  Both are needed:
a node with the attribute but without the reference is somebody else's and is never touched.
A re-run replaces only its own earlier outputs, and only once the new ones are complete; any
error before that rolls the scene back with SceneTransaction.
"""
import vtk

from CardiacQuanLib.indices_table import summaryFromTable

ROLE_ATTRIBUTE = "CardiacQuan.Role"
INPUT_REFERENCE_ROLE = "CardiacQuanInput"
FOLDER_ATTRIBUTE = "CardiacQuan.InputID"


class Role:
    """Values of ROLE_ATTRIBUTE."""

    SEGMENTATION_SEQUENCE = "segmentation-sequence"
    SECTORS_SEQUENCE = "sectors-sequence"
    SEGMENTATION = "segmentation"          # the proxy of the segmentation sequence
    SECTORS = "sectors"                    # the proxy of the sectors sequence
    INDICES_TABLE = "indices-table"
    CURVES_TABLE = "curves-table"
    CHART = "chart"
    SEGMENTS_TABLE = "segments-table"       # AHA 16 segments (segments.csv)
    BULLSEYE = "bullseye"                   # the bull's-eye picture (bullseye.png) as an RGB volume
    SERIES_PREFIX = "series-"
    BROWSER = "browser"                    # a browser made for a 4-D volume
    FRAMES_SEQUENCE = "frames-sequence"    # the frames of a 4-D volume, copied into a sequence


#: the CardiacQuanOutputs field that holds the one node of each role (series and proxies aside)
ROLE_FIELDS = {Role.SEGMENTATION_SEQUENCE: "segmentationSequence", Role.SECTORS_SEQUENCE: "sectorsSequence",
               Role.INDICES_TABLE: "indicesTable", Role.CURVES_TABLE: "curvesTable", Role.CHART: "chart",
               Role.SEGMENTS_TABLE: "segmentsTable", Role.BULLSEYE: "bullseye", Role.BROWSER: "browser"}


class CardiacQuanOutputs:
    """The nodes of one run (any may be None)."""

    def __init__(self):
        self.segmentationSequence = None
        self.segmentation = None          # proxy segmentation node (what the views show)
        self.sectorsSequence = None
        self.sectors = None               # proxy sectors segmentation node
        self.indicesTable = None
        self.curvesTable = None
        self.chart = None
        self.series = []
        self.segmentsTable = None
        self.bullseye = None
        self.browser = None
        self.folderItemID = 0
        self.summary = {}
        self.warnings = []
        self.outputDirectory = None       # kept only with keepTemporaryFiles
        self.leftovers = []               # segmentations of an earlier run whose sequence was deleted

    def nodes(self):
        return [n for n in (self.segmentationSequence, self.segmentation, self.sectorsSequence, self.sectors,
                            self.indicesTable, self.curvesTable, self.chart, *self.series, self.segmentsTable,
                            self.bullseye) if n is not None]

    def get(self, key, default=None):
        return getattr(self, key, default)


def markOutput(node, role, owner):
    """Mark a node as this module's output `role` for the cine `owner`."""
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    node.SetNodeReferenceID(INPUT_REFERENCE_ROLE, owner.GetID())


def inputOf(node):
    """The input a CardiacQuan output belongs to, else None.

    Asks only nodes that have the reference role: GetNodeReference() adds an empty role to a node
    that has none, and input nodes must stay untouched.
    """
    if node is None:
        return None
    for i in range(node.GetNumberOfNodeReferenceRoles()):
        if node.GetNthNodeReferenceRole(i) == INPUT_REFERENCE_ROLE:
            return node.GetNodeReference(INPUT_REFERENCE_ROLE)
    return None


def allNodes(scene):
    nodes = scene.GetNodes()
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def browsersWithRole(scene, role):
    out = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        b = scene.GetNthNodeByClass(i, "vtkMRMLSequenceBrowserNode")
        if b.GetAttribute(ROLE_ATTRIBUTE) == role:
            out.append(b)
    return out


def ownerOf(node, sequencesLogic):
    """The cine a node belongs to: an output's input, a proxy's sequence, or the node itself."""
    if node is None:
        return None
    if inputOf(node) is not None:
        return inputOf(node)
    if node.IsA("vtkMRMLSequenceNode"):
        return node
    browser = sequencesLogic.GetFirstBrowserNodeForProxyNode(node) if sequencesLogic else None
    if browser is not None:
        seq = browser.GetSequenceNode(node)
        if seq is not None and inputOf(seq) is not None:
            return inputOf(seq)
        if browser.GetAttribute(ROLE_ATTRIBUTE) == Role.BROWSER and inputOf(browser) is not None:
            return inputOf(browser)
        return seq
    return node


def findOutputs(scene, sequencesLogic, node) -> CardiacQuanOutputs:
    """The outputs of the last run on a cine (given as the cine or any of its nodes)."""
    out = CardiacQuanOutputs()
    owner = ownerOf(node, sequencesLogic)
    if owner is None:
        return out
    for n in allNodes(scene):
        role = n.GetAttribute(ROLE_ATTRIBUTE)
        if role is None or inputOf(n) is not owner:
            continue
        if role in ROLE_FIELDS:
            setattr(out, ROLE_FIELDS[role], n)
        elif role.startswith(Role.SERIES_PREFIX):
            out.series.append(n)
        elif role in (Role.SEGMENTATION, Role.SECTORS):
            out.leftovers.append(n)
    for seq, attr in ((out.segmentationSequence, "segmentation"), (out.sectorsSequence, "sectors")):
        if seq is not None and sequencesLogic is not None:
            browser = sequencesLogic.GetFirstBrowserNodeForSequenceNode(seq)
            if browser is not None:
                setattr(out, attr, browser.GetProxyNode(seq))
                out.browser = out.browser or browser
    # proxies whose sequence the user deleted: no longer shown per frame, removed on the next run
    out.leftovers = [n for n in out.leftovers if n is not out.segmentation and n is not out.sectors]
    shNode = scene.GetSubjectHierarchyNode()
    if shNode is not None:
        items = vtk.vtkIdList()
        shNode.GetItemChildren(shNode.GetSceneItemID(), items, True)
        for i in range(items.GetNumberOfIds()):
            item = items.GetId(i)
            if shNode.GetItemAttribute(item, FOLDER_ATTRIBUTE) == owner.GetID():
                out.folderItemID = item
    if out.indicesTable is not None:
        out.summary = summaryFromTable(out.indicesTable)
    return out


def removeOutputs(scene, sequencesLogic, old, keep=frozenset()):
    """Remove the nodes of an earlier run (CardiacQuanOutputs), except those whose id() is in keep."""
    for seq, proxy in ((old.segmentationSequence, old.segmentation), (old.sectorsSequence, old.sectors)):
        if seq is None:
            continue
        browsers = vtk.vtkCollection()
        if sequencesLogic is not None:
            sequencesLogic.GetBrowserNodesForSequenceNode(seq, browsers)
        for i in range(browsers.GetNumberOfItems()):
            b = browsers.GetItemAsObject(i)
            p = b.GetProxyNode(seq)
            b.RemoveSynchronizedSequenceNode(seq.GetID())
            if p is not None and id(p) not in keep:
                removeNode(scene, p)
        if proxy is not None and id(proxy) not in keep:
            removeNode(scene, proxy)
    for node in [old.chart, *old.series, old.curvesTable, old.indicesTable, old.segmentsTable, old.bullseye,
                 old.segmentationSequence, old.sectorsSequence, *old.leftovers]:
        if node is not None and id(node) not in keep:
            removeNode(scene, node)
    shNode = scene.GetSubjectHierarchyNode()
    if old.folderItemID and shNode is not None:
        # keep nodes that live on (the browser, a copied frames sequence) by moving them up first
        parent = shNode.GetItemParent(old.folderItemID)
        children = vtk.vtkIdList()
        shNode.GetItemChildren(old.folderItemID, children)
        for i in range(children.GetNumberOfIds()):
            shNode.SetItemParent(children.GetId(i), parent)
        shNode.RemoveItem(old.folderItemID, False, False)


def removeNode(scene, node):
    """Remove a node with its display and storage nodes."""
    if node is None or node.GetScene() is not scene:
        return
    shNode = scene.GetSubjectHierarchyNode()
    item = shNode.GetItemByDataNode(node) if shNode is not None else 0
    if item:
        shNode.RemoveItem(item, False, False)
    if node.IsA("vtkMRMLDisplayableNode"):
        for i in reversed(range(node.GetNumberOfDisplayNodes())):
            dn = node.GetNthDisplayNode(i)
            if dn is not None and dn.GetScene() is scene:
                scene.RemoveNode(dn)
    if node.IsA("vtkMRMLStorableNode"):
        for i in reversed(range(node.GetNumberOfStorageNodes())):
            sn = node.GetNthStorageNode(i)
            if sn is not None and sn.GetScene() is scene:
                scene.RemoveNode(sn)
    scene.RemoveNode(node)


class SceneTransaction:
    """Records what an import adds so a failure can put the scene back as it was."""

    def __init__(self, scene):
        self.scene = scene
        self.nodes = []
        self.items = []
        self.browserAdds = []
        self.intendedNames = []

    def add(self, node, name=None):
        """Record a node this import added; `name` is the name it takes once the old outputs are gone."""
        self.nodes.append(node)
        if name is not None:
            self.intendedNames.append((node, name))
        return node

    def created(self, node):
        if node is not None and node not in self.nodes:
            self.nodes.append(node)
        return node

    def createdItem(self, item):
        self.items.append(item)

    def addToBrowser(self, browser, sequence):
        browser.AddSynchronizedSequenceNode(sequence)
        self.browserAdds.append((browser, sequence))

    def rollback(self):
        for browser, seq in reversed(self.browserAdds):
            proxy = browser.GetProxyNode(seq)
            browser.RemoveSynchronizedSequenceNode(seq.GetID())
            if proxy is not None and proxy.GetScene() is self.scene:
                self.created(proxy)
        shNode = self.scene.GetSubjectHierarchyNode()
        for item in reversed(self.items):
            if shNode is not None:
                shNode.RemoveItem(item, False, False)
        for node in reversed(self.nodes):
            removeNode(self.scene, node)
