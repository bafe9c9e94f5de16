"""The regional results beside the per-frame ones: the AHA 16-segment table and the bull's-eye.

The engine writes ``segments.csv`` (wall thickness at ED and ES, systolic thickening per AHA
segment; columns, units and meanings in ``cardiacquan.contract.SEGMENTS_COLUMNS``) and
``bullseye.png`` when a stack of slices is quantified; a single slice has neither, and then
neither node is made.  The table gets each segment's SNOMED CT code (the extension's terminology,
``segment_definitions.AHA_SEGMENT_CODES``) as one more column; the picture becomes an RGB volume
node that a slice view of the results layout shows (``cine_sync``).
"""
import csv
import os

import numpy as np
import vtk
import vtk.util.numpy_support as vtk_np

import slicer
from cardiacquan.contract import BULLSEYE_PNG, SEGMENTS_COLUMNS, SEGMENTS_CSV

from CardiacQuanLib.errors import CardiacQuanRunError
from CardiacQuanLib.indices_table import toFloat, toInt
from CardiacQuanLib.segment_definitions import AHA_SEGMENT_CODES

#: what the engine is asked for besides its defaults: the bull's-eye (the module asks for no other picture)
ENGINE_ARGUMENTS = ("--bullseye",)
#: the column added to segments.csv's: the segment's SNOMED CT code (DICOM CID 3717)
CODE_COLUMN = "snomed_ct_code"
TEXT_SEGMENT_COLUMNS = ("level", "name", "slices")
#: the bull's-eye picture's pixel size in the scene (mm): a volume needs one; 0.1 mm keeps it small
BULLSEYE_PIXEL_MM = 0.1


def readSegmentsCsv(path):
    """(columns, rows as dicts of strings) of the engine's segments.csv, or None when absent."""
    if not os.path.isfile(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = [dict(r) for r in reader]
    if "segment" not in columns:
        raise CardiacQuanRunError(f"{SEGMENTS_CSV} has no 'segment' column")
    return columns, rows


def fillSegmentsTable(table, columns, rows):
    """segments.csv's columns (text or double; integer segment numbers) plus the SNOMED CT code."""
    info = {name: (unit, meaning) for name, unit, meaning in SEGMENTS_COLUMNS}
    for name in columns + [CODE_COLUMN]:
        if name == CODE_COLUMN:
            arr = vtk.vtkStringArray()
            for r in rows:
                arr.InsertNextValue(AHA_SEGMENT_CODES.get(toInt(r.get("segment")), ""))
        elif name in TEXT_SEGMENT_COLUMNS:
            arr = vtk.vtkStringArray()
            for r in rows:
                arr.InsertNextValue(str(r.get(name, "")))
        elif name == "segment":
            arr = vtk.vtkIntArray()
            for r in rows:
                arr.InsertNextValue(toInt(r.get(name), -1))
        else:
            arr = vtk.vtkDoubleArray()
            for r in rows:
                arr.InsertNextValue(toFloat(r.get(name)))
        arr.SetName(name)
        table.AddColumn(arr)
        unit, meaning = info.get(name, ("", "SNOMED CT code of the AHA segment (DICOM CID 3717)"
                                        if name == CODE_COLUMN else ""))
        if unit:
            table.SetColumnUnitLabel(name, unit)
        if meaning:
            table.SetColumnDescription(name, meaning)
    table.Modified()


def readPng(path):
    """(rows, columns, 3) uint8 pixels of a PNG, top row first."""
    reader = vtk.vtkPNGReader()
    reader.SetFileName(path)
    reader.Update()
    img = reader.GetOutput()
    nx, ny, _ = img.GetDimensions()
    if nx == 0 or ny == 0 or img.GetPointData().GetScalars() is None:
        raise CardiacQuanRunError(f"{os.path.basename(path)} is not a readable PNG")
    a = vtk_np.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(ny, nx, -1)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[::-1, :, :3])   # VTK's first row is the bottom one


def bullseyeVolume(rgb):
    """A vector (RGB) volume node, not in a scene, showing the picture upright in an axial view."""
    R, C, _ = rgb.shape
    img = vtk.vtkImageData()
    img.SetDimensions(C, R, 1)
    img.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    vtk_np.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(R, C, 3)[:] = rgb
    node = slicer.vtkMRMLVectorVolumeNode()
    node.SetAndObserveImageData(img)
    node.SetSpacing(BULLSEYE_PIXEL_MM, BULLSEYE_PIXEL_MM, BULLSEYE_PIXEL_MM)
    # Slicer's axial view has the patient's left on the screen's right and anterior up: columns run
    # towards -R (screen right), rows towards -A (screen down), as the picture is read
    node.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    return node


def bullseyeFile(outDir):
    path = os.path.join(outDir, BULLSEYE_PNG)
    return path if os.path.isfile(path) else None


def segmentsFile(outDir):
    return os.path.join(outDir, SEGMENTS_CSV)
