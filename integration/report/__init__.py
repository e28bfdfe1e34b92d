"""The canonical radiology report: the model every codec reads into and writes from
(``model``), its sections (``sections``) and patient identifiers (``patient_ids``).
"""

from __future__ import annotations

__all__: list[str] = []
