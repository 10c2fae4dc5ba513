"""pgbench scripts: the SQL a consume sends, written by hand, as the ceiling to compare with.

Every client numbers its own keys (``-D n=0`` and ``\\set n :n + 1``), so keys never collide
and the case-study script never hits the UNIQUE constraint. Requests are the operator's
(client 1), as the command line sends them.
"""

KEY = "'pgb-' || :client_id::text || '-' || :n::text"

# The case study's transaction, statement by statement, as the ORM path sends it.
CASE_STUDY = f"""\\set aid {{aid}}
\\set n :n + 1
BEGIN;
SELECT energy FROM energy_account WHERE id = :aid FOR UPDATE \\gset
\\if :energy >= 1
INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after, created_at)
  VALUES (1, :aid, 1, {KEY}, :energy::bigint - 1, now()) RETURNING id, created_at;
UPDATE energy_account SET energy = energy - 1 WHERE id = :aid;
\\endif
COMMIT;
"""

# Lock, check, record, deduct and answer a replay in one autocommit statement: one round trip.
_ONE_STATEMENT = f"""WITH acct AS (SELECT id, energy FROM energy_account WHERE id = :aid FOR UPDATE),
ins AS (
  INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after, created_at)
  SELECT 1, id, 1, {KEY}, energy - 1, now() FROM acct WHERE energy >= 1
  ON CONFLICT ON CONSTRAINT energy_consumption_client_key_unique DO NOTHING
  RETURNING id, account_id, amount, balance_after, created_at),
upd AS (UPDATE energy_account SET energy = energy - 1 WHERE id = :aid AND EXISTS (SELECT FROM ins))
SELECT id, balance_after, created_at FROM ins
UNION ALL
SELECT id, balance_after, created_at FROM energy_consumption
  WHERE client_id = 1 AND idempotency_key = {KEY} AND NOT EXISTS (SELECT 1 FROM ins);
"""

ONE_STATEMENT = "\\set aid {aid}\n\\set n :n + 1\n" + _ONE_STATEMENT
# A new key, then its replay: two requests per pgbench transaction.
STORM = "\\set aid {aid}\n\\set n :n + 1\n" + _ONE_STATEMENT + _ONE_STATEMENT


# The holds workload holds this much under a new key, then captures part of it: the rest goes
# back to energy, so every pair leaves the account's held where it was.
HOLD_AMOUNT = 2
CAPTURE_AMOUNT = 1
HOLD_SECONDS = 900  # the default lifetime, as ``hold()`` is called
_ENTRY_COLUMNS = ("account_id, client_id, kind, amount, idempotency_key, target_id, balance_after, seq, created_at, "
                  "held_after, expires_at, state")
# The entry already under the key (the hold looks before it records, the capture finds its hold).
_EARLIER = ("SELECT id, account_id, amount, idempotency_key, balance_after, created_at, kind, held_after, expires_at,"
            f" state\n  FROM energy_consumption WHERE client_id = 1 AND idempotency_key = {KEY} ORDER BY id LIMIT 1")
# Only an account with something held looks for expired holds to release; none expire in a run.
_RELEASE_EXPIRED = """\\if :held > 0
SELECT id, amount FROM energy_consumption
  WHERE account_id = :{account} AND kind = 'hold' AND state = 'open' AND expires_at <= statement_timestamp();
\\endif
"""

# hold() then capture(amount=CAPTURE_AMOUNT) of it: the statements the two use cases send, in
# their order, as two transactions (the capture's look-up of the key runs before its BEGIN).
HOLD_CAPTURE = f"""\\set aid {{aid}}
\\set n :n + 1
BEGIN;
SELECT energy, held, last_seq FROM energy_account WHERE id = :aid ORDER BY id LIMIT 1 FOR UPDATE \\gset
{_RELEASE_EXPIRED.format(account="aid")}{_EARLIER};
INSERT INTO energy_consumption ({_ENTRY_COLUMNS})
  VALUES (:aid, 1, 'hold', {HOLD_AMOUNT}, {KEY}, NULL, :energy::bigint - {HOLD_AMOUNT}, :last_seq::bigint + 1,
          statement_timestamp(), :held::bigint + {HOLD_AMOUNT},
          statement_timestamp() + interval '{HOLD_SECONDS} seconds', 'open')
  RETURNING id AS hold_id, kind, created_at, held_after \\gset
SELECT id, created_at, expires_at FROM energy_consumption WHERE id = :hold_id LIMIT 21;
UPDATE energy_account SET energy = energy + -{HOLD_AMOUNT}, held = held + {HOLD_AMOUNT}, last_seq = last_seq + 1
  WHERE id = :aid;
COMMIT;
{_EARLIER} \\gset h_
BEGIN;
SELECT energy, held, last_seq FROM energy_account WHERE id = :h_account_id ORDER BY id LIMIT 1 FOR UPDATE \\gset
{_RELEASE_EXPIRED.format(account="h_account_id")}SELECT state FROM energy_consumption WHERE id = :h_id LIMIT 21;
SELECT id, account_id, amount, balance_after, created_at, kind, held_after FROM energy_consumption
  WHERE kind IN ('capture', 'void') AND target_id = :h_id ORDER BY id LIMIT 1;
INSERT INTO energy_consumption ({_ENTRY_COLUMNS})
  VALUES (:h_account_id, 1, 'capture', {CAPTURE_AMOUNT}, NULL, :h_id,
          :energy::bigint + {HOLD_AMOUNT - CAPTURE_AMOUNT}, :last_seq::bigint + 1, DEFAULT,
          :held::bigint - {HOLD_AMOUNT}, NULL, NULL)
  RETURNING id, kind, created_at, held_after;
UPDATE energy_account
  SET energy = energy + {HOLD_AMOUNT - CAPTURE_AMOUNT}, held = held + -{HOLD_AMOUNT}, last_seq = last_seq + 1
  WHERE id = :h_account_id;
UPDATE energy_consumption SET state = 'captured' WHERE id = :h_id AND state = 'open';
COMMIT;
"""


def render(script: str, accounts: int) -> str:
    return script.replace("{aid}", "1" if accounts == 1 else f"random(1, {accounts})")
