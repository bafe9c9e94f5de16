"""CardiacQuanLib: the Slicer-side helpers of the CardiacQuan module (Slicer's ``<Module>Lib`` convention).

Everything here runs inside Slicer's Python and works on MRML nodes; the engine itself is the
package ``cardiacquan`` next to this folder and runs in a separate process.  One concern per file:

- ``errors``: the one-line error a run reports to the user.
- ``application``: what differs between the Slicer application and the slicer-core wheel.
- ``requirements``: which Python requirements of the engine are missing; installing them.
- ``segment_definitions``: segment names, colours and standard terminology of the outputs.
- ``mrml_arrays``: numpy arrays <-> vtk images, matrices and segmentation nodes.
- ``output_registry``: the role attributes marking the nodes the module made; finding and
  removing earlier outputs; the scene transaction that rolls a failed import back.
- ``indices_table``: indices.csv <-> table node, its attributes, the summary text.
- ``scene_input``: reading the cine (and edited masks) from the scene.
- ``results_import``: building the output nodes from the engine's files.
- ``regional_import``: the AHA 16-segment table and the bull's-eye volume.
- ``cine_sync``: the chart marker and table row that follow the cine's browser, go to ED/ES,
  the results layout.
- ``startup``: at Slicer's startup, the extension's terminology and its sample cine (Sample Data).
- ``engine_process``: starting the engine process, its progress, cancel, the running job.

Dependencies go one way: the module's Logic -> these helpers -> the engine process
(``python -m cardiacquan``).  Of the engine, the helpers import ``cardiacquan.contract`` only
(numpy only), so the module loads before the engine's requirements are installed.
"""
