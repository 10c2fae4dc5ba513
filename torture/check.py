"""The audit after a run: the database and every client's log against the contract's guarantees."""

from __future__ import annotations

from collections import Counter, defaultdict

from torture.history import History

# Consumption rows as read by TortureDatabase.snapshot().
ID, ACCOUNT, AMOUNT, KEY, BALANCE_AFTER = range(5)


def violations(history: History, balances: dict[int, int], records: list[tuple], start_energy: int) -> list[str]:
    found: list[str] = []
    found += _balances(balances, records, start_energy)
    found += _records(records)
    found += _answers(history, records)
    found += [f"client crashed on an unexpected error: {error}" for error in history.crashes]
    found += [f"key {key} was sent with two different requests" for key in history.conflicting_sends]
    return found


def _balances(balances, records, start_energy) -> list[str]:
    found = []
    spent = Counter()
    by_account = defaultdict(list)
    for record in records:
        spent[record[ACCOUNT]] += record[AMOUNT]
        by_account[record[ACCOUNT]].append(record)
    for account, energy in balances.items():
        if energy < 0:
            found.append(f"account {account} is below zero: {energy}")
        if energy != start_energy - spent[account]:
            expected = start_energy - spent[account]
            found.append(f"account {account} has {energy}, but {start_energy} - records = {expected}")
    for rows in by_account.values():
        # Ids are drawn under the account's row lock, so per account they follow commit order
        # and each stored balance_after must continue the one before it.
        left = start_energy
        for row in rows:
            left -= row[AMOUNT]
            if row[BALANCE_AFTER] != left:
                found.append(f"consumption {row[ID]} stored balance_after {row[BALANCE_AFTER]}, expected {left}")
                break
    return found


def _records(records) -> list[str]:
    counts = Counter(record[KEY] for record in records)
    return [f"key {key} is recorded {n} times" for key, n in counts.items() if n > 1]


def _answers(history: History, records) -> list[str]:
    found = []
    by_key = {record[KEY]: record for record in records}
    for key in by_key.keys() - history.keys.keys():
        found.append(f"key {key} is recorded but no client ever sent it")
    for key, entry in history.keys.items():
        record = by_key.get(key)
        if record is not None and (record[ACCOUNT], record[AMOUNT]) != (entry.account, entry.amount):
            found.append(f"key {key} is recorded for account {record[ACCOUNT]} amount {record[AMOUNT]}, "
                         f"sent for account {entry.account} amount {entry.amount}")
        for answer in entry.answers:
            outcome = answer["outcome"]
            if outcome == "unavailable":
                continue
            if outcome in ("applied", "replayed", "answer_dropped"):
                if record is None:
                    found.append(f"key {key} was answered {outcome} but is not recorded")
                elif (answer["consumption_id"], answer["amount"], answer["balance_after"]) != (
                        record[ID], record[AMOUNT], record[BALANCE_AFTER]):
                    found.append(f"key {key} was answered {answer} but recorded as {record}")
            elif outcome in ("insufficient_energy", "account_not_found") and record is not None:
                # Clients re-send only keys they had applied, so a refusal of a recorded key
                # means a replay was evaluated afresh instead of answered with the original.
                found.append(f"key {key} was refused ({outcome}) yet is recorded")
            elif outcome not in ("insufficient_energy", "account_not_found"):
                found.append(f"key {key}, always sent with the same request, was answered {outcome}")
        applied = [a for a in entry.answers if a["outcome"] in ("applied", "answer_dropped")]
        if len(applied) > 1:
            found.append(f"key {key} was answered applied {len(applied)} times")
    return found
