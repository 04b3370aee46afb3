"""What every wire model shares: the base class and the field types used everywhere."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Wire(BaseModel):
    """A JSON body the brain answers with.

    ``extra="allow"``: a field the model does not declare is kept, both when a
    route's dict is checked against its model (nothing a client reads today is
    ever dropped) and when the client reads an answer from a newer brain.
    ``populate_by_name``: fields named after Python keywords (``from``, ``in``)
    are built by their Python name and sent by their JSON name.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)


Timestamp = Annotated[str, Field(description="ISO 8601 time, UTC (2026-01-31T12:00:00+00:00)",
                                 json_schema_extra={"format": "date-time"})]
Bytes = Annotated[int, Field(ge=0, description="bytes")]
Seconds = Annotated[float, Field(description="seconds")]
