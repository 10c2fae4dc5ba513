"""A child process that audits the ledger again and again while others consume (see tests/workers.py)."""

from __future__ import annotations

import time


def audit_worker(db_name, barrier, expected, results) -> None:
    """After the barrier, audit the ledger again and again until it holds ``expected`` consumptions
    (at most 60 s); put (clean, consumptions) of each audit."""
    from tests.support import setup_django
    from tests.workers import line_up

    setup_django(db_name)
    from django.db import connection, transaction

    from energy.application.audit import audit_ledger
    from energy.models import Account

    line_up(connection)
    barrier.wait(timeout=60)
    # Line up with the consumers: wait for the row lock the test holds, so the test sees this
    # process waiting too before it lets everyone go.
    with transaction.atomic():
        list(Account.objects.select_for_update().filter(pk=1).values_list("pk", flat=True))
    reports, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        report = audit_ledger()
        reports.append({"audit": True, "clean": report.clean, "consumptions": report.consumptions,
                        "violations": [v.to_dict() for v in report.violations[:3]]})
        if report.consumptions >= expected:
            break
    results.put(reports)
    connection.close()
