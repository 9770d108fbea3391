"""smallfleet: serve fleets of small models on NVIDIA Triton, placed where the grid is cleanest."""

from typing import Final

__version__: Final = "0.1.0"
GROUP: Final = "serving.smallfleet.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
FIELD_MANAGER: Final = "smallfleet"
