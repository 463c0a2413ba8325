"""Score images and compute the statistics of a face recognition bias audit.

Framework-free (no Django); model code imports onnxruntime/insightface lazily per module, so the
light modules (registry, comparisons, rates) can be imported anywhere.

Scoring (faces -> numbers):

- :mod:`audit.registry`: the model directory, each model's file, SHA-256 and licence.
- :mod:`audit.detection`: SCRFD face detection with 5 keypoints (small faces upscaled and padded).
- :mod:`audit.align`: 112x112 crops aligned to the ArcFace 5-point template.
- :mod:`audit.recognition`: FR models behind one :class:`~audit.recognition.Recognizer`
  interface (MobileFaceNet with its exact preprocessing).
- :mod:`audit.recognition_dlib`: dlib's ResNet, a second, independent FR family.
- :mod:`audit.expression`: smile score and mouth opening from dlib's 68 landmarks.
- :mod:`audit.sensors`: perceived gender and age, skin tone (ITA, the lighting-invariant skin
  tone index, skin hue), brightness, sharpness,
  illumination uniformity; :mod:`audit.pose`: head yaw, pitch and roll from 5 keypoints.
- :mod:`audit.analysis`: :class:`~audit.analysis.FaceAnalyzer`, all of the above in one batch.
- :mod:`audit.conditioning`: the identity embedding a diffusion route is conditioned on,
  computed as the route's authors did (insightface's detector at 640x640, their ArcFace).

Statistics (numbers -> findings):

- :mod:`audit.comparisons`: mated and non-mated pairs of an audit, cosine scores.
- :mod:`audit.rates`: one global threshold at a target FMR, per-group FNMR and FMR with counts,
  cross-group FMR, rule-of-three bounds (ISO/IEC 19795-1 definitions).
- :mod:`audit.quality`: LightQNet face image quality, ISO/IEC 29794-5-style measures,
  percentiles against the audit's baselines, quality by group, error-versus-discard curves.
- :mod:`audit.uncertainty`: intervals from a bootstrap over identities.
- :mod:`audit.disparity`: max/min ratios, Fairness Discrepancy Rate, GARBE, small-cell flags,
  with simultaneous intervals (:mod:`audit.simultaneous`) and identity-label permutation tests
  of equal rates (:mod:`audit.permutation`).
- :mod:`audit.curves`: DET curves and score histograms per group.
- :mod:`audit.factor_effects`: paired factor effects against the control (Wilcoxon, McNemar,
  Holm/BH) and group x condition interactions with identity-clustered errors.
"""
