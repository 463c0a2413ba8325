"""Score images and compute the statistics of a face recognition bias audit.

Framework-free (no Django); model code imports onnxruntime/insightface lazily per module, so the
light modules (registry, comparisons, rates) can be imported anywhere. No module imports another
that imports it back (not even lazily), and each module names its job.

Scoring (faces -> numbers):

- :mod:`audit.model_catalog`: every known model file with its SHA-256, role and licence (pure
  data); :mod:`audit.registry`: the model directory, finding and verifying those files (it
  re-exports the catalogue); :mod:`audit.fetch`: resumable, verified downloads.
- :mod:`audit.detection`: SCRFD face detection with 5 keypoints (small faces upscaled and padded).
- :mod:`audit.align`: 112x112 crops aligned to the ArcFace 5-point template.
- :mod:`audit.recognition`: FR models behind one :class:`~audit.recognition.Recognizer`
  interface (MobileFaceNet with its exact preprocessing).
- :mod:`audit.recognition_dlib`: dlib's ResNet, a second, independent FR family.
- :mod:`audit.expression`: smile score and mouth opening from dlib's 68 landmarks.
- :mod:`audit.sensors`: perceived gender and age, brightness, sharpness, illumination
  uniformity; :mod:`audit.skin_tone`: ITA, the lighting-invariant skin tone index and skin hue
  (re-exported by :mod:`audit.sensors`); :mod:`audit.pose`: head yaw, pitch and roll from 5
  keypoints.
- :mod:`audit.lightqnet`: the LightQNet face image quality model and its crop.
- :mod:`audit.analysis`: :class:`~audit.analysis.FaceAnalyzer`, all of the above in one batch.
- :mod:`audit.conditioning`: the identity embedding a diffusion route is conditioned on,
  computed as the route's authors did (insightface's detector at 640x640, their ArcFace).

Statistics (numbers -> findings):

- :mod:`audit.comparisons`: mated and non-mated pairs of an audit; :mod:`audit.pair_scores`:
  their cosine scores.
- :mod:`audit.thresholds`: one global threshold at a target FMR; :mod:`audit.rates`: per-group
  FNMR and FMR with counts, cross-group FMR, rule-of-three bounds (ISO/IEC 19795-1 definitions).
- :mod:`audit.quality`: ISO/IEC 29794-5-style measures, percentiles against the audit's
  baselines, quality by group, error-versus-discard curves.
- :mod:`audit.resampling`: the seeded identity-level (subsets) bootstrap engine: documented
  draws, aggregated identity-pair counts, replicate counts, percentile intervals.
  :mod:`audit.uncertainty`: per-group FNMR/FMR intervals from it; :mod:`audit.cross_group`:
  intervals for every cell of the cross-group FMR matrix.
- :mod:`audit.disparity`: the disparity summary with simultaneous intervals; the single
  measures (max/min ratios, Fairness Discrepancy Rate, GARBE) and their kernels in
  :mod:`audit.disparity_measures`, the intervals in :mod:`audit.disparity_intervals` and
  :mod:`audit.simultaneous`, identity-label permutation tests in :mod:`audit.permutation`,
  small-cell flags in :mod:`audit.rankability`.
- :mod:`audit.curves`: DET curves and score histograms per group.
- :mod:`audit.factor_effects`: paired factor effects against the control, on the table checked
  by :mod:`audit.mated_scores`, with the tests and Holm/BH corrections of
  :mod:`audit.paired_tests`; :mod:`audit.interactions`: group x condition interactions with
  identity-clustered errors.
- :mod:`audit.compare`: two models or two audits, B - A (the differences computed in
  :mod:`audit.model_differences`).
- :mod:`audit.planner`: what a design can show before it runs (figures in
  :mod:`audit.plan_statistics`, the plan and its words in :mod:`audit.plan_report`).
- :mod:`audit.narrative` and :mod:`audit.acquisition`: plain-language sentences.
- :mod:`audit.summary`: the read side of a stored ``summary.json``
  (:class:`~audit.summary.AuditSummary` -> FR models -> operating points with label,
  threshold, per-group rates and intervals) that pages, report, API, compare and exports take.
- :mod:`audit.available`: which FR models a model directory offers and which one judges
  identity.
- :mod:`audit.frozen`: the read-only accessors of every immutable result object;
  :mod:`audit.jsonable`: plain JSON values for their ``to_dict``.

Where new things go:

- a new FR model: its file in :data:`audit.model_catalog.KNOWN_MODELS` (or
  ``KNOWN_PACKAGE_MODELS``), an adapter implementing :class:`audit.recognition.Recognizer`
  (beside :mod:`audit.recognition`, or its own module as :mod:`audit.recognition_dlib`), and one
  line in :data:`audit.analysis.RECOGNIZERS`;
- a new statistic: its own module taking the comparison table or a result object, returning a
  frozen dataclass whose tables are read through :class:`audit.frozen.Copied` and whose
  ``to_dict`` uses :func:`audit.jsonable.plain`; anything resampled draws through
  :mod:`audit.resampling` with an explicit seed;
- a new disparity measure: its kernel and definition in :mod:`audit.disparity_measures`, its
  interval mapping in :mod:`audit.disparity_intervals`;
- a new sensor: a function on aligned (N, 112, 112, 3) uint8 crops in :mod:`audit.sensors` (or
  a module of its own, as :mod:`audit.skin_tone`), its unit in
  :data:`audit.sensors.SENSOR_UNITS`, a bump of :data:`audit.sensors.SENSOR_VERSION`, and its
  field in :class:`audit.analysis.AnalysisBatch`.
"""
