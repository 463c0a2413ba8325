"""Where pip put MobileStyleGAN's network files, and what they must hash to.

The pinned release is PyPI ``random-face`` 2021.7.21.1 (installed with ``--no-deps``): its
``random_face/data/{MappingNetwork,SynthesisNetwork}.{xml,bin}`` are the OpenVINO IR of the
network. Both engines read them: OpenVINO (:mod:`generator.mobilestylegan`) and the torch port
(:mod:`generator.mobilestylegan_torch`); each checks the hashes below before loading. Nothing
here imports numpy, torch or OpenVINO.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: SHA-256 of ``SynthesisNetwork.bin`` and ``MappingNetwork.bin`` in random-face 2021.7.21.1.
SYNTHESIS_SHA256 = "c7da15fa22d508c82e1c30dd6b4cdf67fe3ccdddaf85b310ee764dbf0c289645"
MAPPING_SHA256 = "212dd716bdb556e18db603ea97300d4fa3c872b878c726b2402fea80820e7305"


class MobileStyleGANUnavailable(RuntimeError):
    """The network files or OpenVINO are not installed."""


def data_dir() -> Path:
    """``random_face/data`` as pip installed it (found without importing the package, whose own
    imports need packages this project does not install)."""
    spec = importlib.util.find_spec("random_face")
    if spec is None or not spec.submodule_search_locations:
        raise MobileStyleGANUnavailable(
            "MobileStyleGAN's files are missing: install them with "
            "`pip install --no-deps random-face==2021.7.21.1` (./faceaudit does)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"
