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


def render(script: str, accounts: int) -> str:
    return script.replace("{aid}", "1" if accounts == 1 else f"random(1, {accounts})")
