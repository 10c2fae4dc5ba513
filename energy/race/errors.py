"""Why a race demo could not run, as opposed to what it found."""


class DemoError(Exception):
    """Base of every reason the demo could not produce a report."""


class DemoUnsupported(DemoError):
    """The database cannot show the races: it is not PostgreSQL."""


class DemoFailed(DemoError):
    """A demo process crashed or hung; the report would be meaningless."""
