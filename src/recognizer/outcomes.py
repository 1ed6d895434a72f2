"""What can become of a stream frame, named once for the server, the clients and the metrics.

The server counts a stream's frames by outcome in its trailing metadata, under
`FrameOutcome.trailer` (recognizer-frames-answered, ...); the clients read them back
under the same names. No torch and no grpc here, so every side can import it.
"""

from __future__ import annotations

import enum

TRAILER_PREFIX = "recognizer-frames-"


class FrameOutcome(enum.StrEnum):
    """A frame was classified, skipped (latest-frame policy), or failed with an error."""

    ANSWERED = "answered"
    SKIPPED = "skipped"
    FAILED = "failed"

    @property
    def trailer(self) -> str:
        """The trailing-metadata key counting frames with this outcome."""
        return TRAILER_PREFIX + self.value
