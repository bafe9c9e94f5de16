"""Stand-ins for the parts of 3D Slicer that the ``slicer-core`` wheel does not have: the compiled
GUI (``qt``, ``ctk``) and the scripted-module framework (``slicer.ScriptedLoadableModule``,
``slicer.parameterNodeWrapper``).

The module file ``CardiacQuan/CardiacQuan.py`` imports Slicer's framework the way every scripted
module does; ``install()`` makes those imports resolve outside the application, before the module
file is loaded (``slicer_scene.load_module`` calls it).  These stand-ins are deliberately small:
the Logic runs on slicer-core's real MRML classes, only the framework around it is stood in.
A later step may replace the framework stand-ins by Slicer's real pure-Python layer
(../shared/slicer-python): install() is the one place to change.

Nothing here imports TensorFlow.
"""
import os
import sys
import types
import unittest


# --------------------------------------------------------------------------------------
# qt / ctk (the compiled GUI)
# --------------------------------------------------------------------------------------
class Signal:
    """A Qt signal: connect() slots, emit() calls them."""

    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *a):
        for s in list(self.slots):
            s(*a)


class QTimer:
    """qt.QTimer: the test calls the widget's timer slot itself; this records start/stop."""

    def __init__(self):
        self.timeout = Signal()
        self.active = False
        self.interval = 0

    def setInterval(self, ms):
        self.interval = ms

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


def qt_module():
    qt = types.ModuleType("qt")
    qt.QTimer = QTimer
    return qt


# --------------------------------------------------------------------------------------
# slicer.ScriptedLoadableModule
# --------------------------------------------------------------------------------------
class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent or types.SimpleNamespace(isEntered=True)
        self.layout = types.SimpleNamespace(addWidget=lambda w: None)

    def setup(self):
        pass

    def resourcePath(self, filename):
        moduleFile = sys.modules[type(self).__module__].__file__
        return os.path.join(os.path.dirname(moduleFile), "Resources", filename)


class ScriptedLoadableModuleLogic:
    """Slicer's logic base class, parameter node only (the node lives in the Logic's scene)."""

    def __init__(self, parent=None):
        name = type(self).__name__
        self.moduleName = name[: -len("Logic")] if name.endswith("Logic") else name

    def getParameterNode(self):
        scene = self.scene
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
            n = scene.GetNthNodeByClass(i, "vtkMRMLScriptedModuleNode")
            if n.GetAttribute("ModuleName") == self.moduleName:
                return n
        node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetHideFromEditors(True)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        print(message)


def scripted_loadable_module():
    m = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(m, cls.__name__, cls)
    return m


# --------------------------------------------------------------------------------------
# slicer.parameterNodeWrapper
# --------------------------------------------------------------------------------------
class Choice:
    """Same meaning as slicer.parameterNodeWrapper.Choice."""

    def __init__(self, choices):
        self.choices = list(choices)


def parameterNodeWrapper(cls):
    """Minimal typed wrapper over a vtkMRMLScriptedModuleNode (the real one needs Qt).

    Parameters are stored like Slicer's wrapper does: a node-typed field as a node reference with
    the field's name as role, other fields as string parameters named after the field.
    connectGui/disconnectGui do nothing (the .ui widgets are stood in by the tests).
    """
    import slicer

    fields = dict(getattr(cls, "__annotations__", {}))
    defaults = {k: getattr(cls, k) for k in fields if hasattr(cls, k)}

    def isNodeType(annotation):
        if isinstance(annotation, str):
            return "vtkMRML" in annotation
        args = getattr(annotation, "__args__", None)
        if args:
            return any(isinstance(a, type) and issubclass(a, slicer.vtkMRMLNode) for a in args)
        return isinstance(annotation, type) and issubclass(annotation, slicer.vtkMRMLNode)

    def baseType(annotation):
        origin = getattr(annotation, "__origin__", None)
        return baseType(annotation.__origin__) if origin is not None and hasattr(annotation, "__metadata__") else annotation

    class Wrapper:
        def __init__(self, parameterNode):
            object.__setattr__(self, "parameterNode", parameterNode)
            for name, value in defaults.items():
                if not isNodeType(fields[name]) and not parameterNode.GetParameter(name):
                    parameterNode.SetParameter(name, str(value))

        def __getattr__(self, name):
            if name not in fields:
                raise AttributeError(name)
            node = object.__getattribute__(self, "parameterNode")
            if isNodeType(fields[name]):
                return node.GetNodeReference(name)
            raw = node.GetParameter(name)
            base = baseType(fields[name])
            if base is bool:
                return raw == "True"
            if base in (int, float):
                return base(raw) if raw else base(defaults.get(name, 0))
            return raw

        def __setattr__(self, name, value):
            if name not in fields:
                raise AttributeError(name)
            node = object.__getattribute__(self, "parameterNode")
            if isNodeType(fields[name]):
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                node.SetParameter(name, str(value))

        def connectGui(self, ui):
            return "tag"

        def disconnectGui(self, tag):
            pass

    # like Slicer's wrapper: observe / batch-modify through the wrapper
    for method in ("AddObserver", "RemoveObserver", "HasObserver", "StartModify", "EndModify", "GetID"):
        setattr(Wrapper, method,
                (lambda m: lambda self, *a: getattr(object.__getattribute__(self, "parameterNode"), m)(*a))(method))
    Wrapper.__name__ = cls.__name__
    Wrapper.__doc__ = cls.__doc__
    Wrapper.fieldNames = tuple(fields)
    return Wrapper


def parameter_node_wrapper_module():
    m = types.ModuleType("slicer.parameterNodeWrapper")
    m.parameterNodeWrapper = parameterNodeWrapper
    m.Choice = Choice
    return m


# --------------------------------------------------------------------------------------
def install():
    """Make ``import qt``, ``import ctk``, ``slicer.ScriptedLoadableModule`` and
    ``slicer.parameterNodeWrapper`` resolve (slicer-core must be importable). Idempotent."""
    import slicer

    modules = {"qt": qt_module, "ctk": lambda: types.ModuleType("ctk"),
               "slicer.ScriptedLoadableModule": scripted_loadable_module,
               "slicer.parameterNodeWrapper": parameter_node_wrapper_module}
    for name, make in modules.items():
        if name not in sys.modules:
            sys.modules[name] = make()
        if name.startswith("slicer."):
            setattr(slicer, name.split(".", 1)[1], sys.modules[name])
