"""The one exception type a user's mistake raises.

Every error a user can cause (an unknown model, a bad shape, an unreadable
file, an invalid environment) is a :class:`TiercutError` whose message is one
line naming the offending thing and what to do about it. The CLI prints the
message and exits non-zero; library users catch it like any exception.
"""


class TiercutError(Exception):
    """A user-facing error: one line, names the thing and the fix."""
