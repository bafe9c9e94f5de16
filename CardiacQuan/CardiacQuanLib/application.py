"""What differs between the Slicer application and the ``slicer-core`` wheel (no Qt, no ``slicer.app``).

The Logic runs in both: inside Slicer, for users; on slicer-core, for the tests and batch scripts.
The few places that need the application (module logics by name, the temporary folder, keeping
the GUI responsive, the Sequences toolbar) ask here instead of testing for Qt themselves.
"""
import os

import slicer


def inSlicerApplication() -> bool:
    """True inside the Slicer application (there is a ``slicer.app``)."""
    return getattr(slicer, "app", None) is not None


def applicationHome():
    """Slicer's installation folder (``slicer.app.slicerHome``), or None outside the application."""
    return getattr(getattr(slicer, "app", None), "slicerHome", None)


def applicationLogic():
    """Slicer's application logic, or None outside the application."""
    app = getattr(slicer, "app", None)
    return app.applicationLogic() if app is not None else None


def moduleLogic(appLogic, name):
    """A module's logic by its Slicer module name ("Sequences", "Plots", ...), or None."""
    logic = appLogic.GetModuleLogic(name) if appLogic is not None else None
    if logic is None and inSlicerApplication():
        module = getattr(getattr(slicer, "modules", None), name.lower(), None)
        logic = module.logic() if module is not None else None
    return logic


def processEvents():
    """Let the GUI redraw while a script waits (nothing outside the application)."""
    app = getattr(slicer, "app", None)
    if app is not None and hasattr(app, "processEvents"):
        app.processEvents()


def temporaryBase(preferred=None):
    """Folder for the engine's exchange files: `preferred`, Slicer's temporary folder, or None (system)."""
    if preferred:
        os.makedirs(preferred, exist_ok=True)
        return preferred
    app = getattr(slicer, "app", None)
    path = getattr(app, "temporaryPath", None) if app is not None else None
    return path if path and os.path.isdir(path) else None


def showBrowserInToolbar(browser):
    """Make a sequence browser the one the Sequences toolbar plays (application only)."""
    if browser is not None and inSlicerApplication():
        slicer.modules.sequences.setToolBarActiveBrowserNode(browser)


def whenStartupCompleted(callback):
    """Call `callback` once Slicer has started (its ``startupCompleted()`` signal); False outside the
    application, where nothing starts up."""
    connect = getattr(getattr(slicer, "app", None), "connect", None)
    if connect is None:
        return False
    connect("startupCompleted()", callback)
    return True
