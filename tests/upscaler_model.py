"""A second model, defined only in the test suite: an image upscaler taking ``image`` and ``scale``.

Nothing of it is a real Scenario model's schema. The suite names it in ``AIRFLOW__KLING__MODEL_SPECS``
(``tests/conftest.py``), as a user names a spec of their own: the emulator serves and validates it, the
generic operator checks its inputs, the archive, lineage and the preview read it, and no line of the
package names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_kling.models.spec import AssetLookup, ModelInput, ModelSpec, Output

MODEL_ID = "model_test-upscaler"
MAX_IMAGE_BYTES = 2_000_000


def lineage_fields(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The image asset and the scale."""
    return {"imageAssetId": inputs.get("image"), "scale": inputs.get("scale")}


def preview_rows(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The image input and the scale as people say it (x2)."""
    return [("Image input", str(inputs.get("image") or "-")), ("Upscaled", f"x{inputs.get('scale', 2)}")]


def cost(inputs: Mapping[str, Any], assets: AssetLookup) -> float:
    """3 creative units per step of scale."""
    scale = inputs.get("scale", 2)
    return 3.0 * float(scale if isinstance(scale, int | float) else 2)


UPSCALER = ModelSpec(
    model_id=MODEL_ID,
    title="Test upscaler",
    inputs=(
        ModelInput(name="image", type="file", kind="image", required=True, max_size=MAX_IMAGE_BYTES),
        ModelInput(name="scale", type="number", default=2, min=2, max=4, step=1),
        ModelInput(name="style", type="string", allowed_values=("photo", "art")),
    ),
    permanent_failures=(r"\bimage too small\b",),
    lineage_fields=lineage_fields,
    preview_rows=preview_rows,
    output=Output(kind="image", mime_type="image/png", extension=".png"),
    archive_asset="test_upscaled_images",
    emulated_cost=cost,
)
