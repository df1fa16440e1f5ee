"""psycopg2 and SQLAlchemy (Debian's python3-psycopg2, python3-sqlalchemy) through dpgate.

Run by python_test.sh, which starts dpgate (lib.sh) and passes its port, the
database, the config and the superuser DSN of the real PostgreSQL in the
environment. Checks: the statements the drivers send on connect, catalog
browsing with SQLAlchemy's inspector, private GROUP BYs with client-side
parameters whose released values are noisy but within a stated bound of the
truth, exactly one ledger charge per execution, and refusals raised as driver
exceptions carrying dpgate's explanation. Exits non-zero on the first failure.
"""

import logging
import math
import os
import re
import subprocess
import sys

import psycopg2
import sqlalchemy
from sqlalchemy import MetaData, Table, create_engine, func, inspect, select, text

PORT = os.environ["DPGATE_PORT"]
DB = os.environ["DB"]
CONFIG = os.environ["CONFIG"]
DPGATE = os.environ["DPGATE_BINARY"]
TRUTH_DSN = os.environ["TRUTH_DSN"]
ALICE_PASSWORD = os.environ["ALICE_PASSWORD"]
DSN = (
    f"host=127.0.0.1 port={PORT} dbname={DB} user=alice password={ALICE_PASSWORD} "
    "sslmode=disable connect_timeout=10"
)
URL = f"postgresql+psycopg2://alice:{ALICE_PASSWORD}@127.0.0.1:{PORT}/{DB}?sslmode=disable"

# Bound on |released - truth|: the receipt's noise scale b times
# ln(2 N / 1e-6) + 1. Counts get discrete Laplace noise, P(|X| >= t) <= 2 exp(-t/b);
# sums snapped Laplace, the same plus less than b / 2^20 of rounding. With at
# most N_CHECKS released values checked here, the chance that a correct dpgate
# fails any check is below 1e-6. No retries.
N_CHECKS = 50
BOUND_FACTOR = math.log(2 * N_CHECKS / 1e-6) + 1
checked = 0
exact_sums = 0
released_sums = 0


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def ledger():
    """(charged queries, spent epsilon) of alice in dataset clinic, this period."""
    out = subprocess.run(
        [DPGATE, "ledger", "status", "-c", CONFIG, "--analyst", "alice", "--dataset", "clinic"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1] == "analyst" and fields[2] == "alice":
            return int(fields[-2]), float(fields[-7])
    fail(f"no ledger row for alice:\n{out}")
    return None


def truth(age):
    """{city: (count, sum)} over the declared cities, from PostgreSQL itself."""
    with psycopg2.connect(TRUTH_DSN) as conn, conn.cursor() as cur:
        cur.execute(
            "select v.city, count(p.id), coalesce(sum(p.charge), 0)::float8"
            " from (values ('east'), ('north'), ('south')) v(city)"
            " left join public.patients p on p.city = v.city and p.age > %s group by v.city",
            (age,),
        )
        return {city: (count, total) for city, count, total in cur.fetchall()}


def scales(receipt):
    """{output column: noise scale} from a privacy receipt."""
    found = {m.group(1): float(m.group(2)) for m in re.finditer(r"; (\w+): [^;(]* scale ([0-9.e+-]+)", receipt)}
    check(found, f"no noise scales in the receipt: {receipt}")
    return found


def check_near(name, released, true_value, scale):
    global checked
    checked += 1
    check(checked <= N_CHECKS, "more checks than the bound allows for")
    bound = BOUND_FACTOR * scale
    check(
        abs(released - true_value) <= bound,
        f"{name}: released {released}, truth {true_value}, beyond the bound {bound:.6g}",
    )


def check_release(name, rows, age, receipt, count_column, sum_column=None):
    """rows: [(city, count[, sum])] in any order; every declared city once."""
    global exact_sums, released_sums
    want = truth(age)
    scale = scales(receipt)
    check(sorted(r[0] for r in rows) == sorted(want), f"{name}: cities {rows} are not the declared ones")
    for row in rows:
        city = row[0]
        check(isinstance(row[1], int), f"{name}: count {row[1]!r} is not an integer")
        check_near(f"{name} {city} count", row[1], want[city][0], scale[count_column])
        if sum_column is not None:
            check_near(f"{name} {city} sum", float(row[2]), want[city][1], scale[sum_column])
            released_sums += 1
            exact_sums += float(row[2]) == want[city][1]


def expect_one_charge(before, epsilon, what):
    queries, spent = ledger()
    check(queries == before[0] + 1, f"{what}: {queries - before[0]} charges for one execution")
    check(abs(spent - before[1] - epsilon) < 1e-9, f"{what}: charged {spent - before[1]}, expected {epsilon}")
    return queries, spent


def expect_refused(cur, sql, params, *fragments, pgcode="42501"):
    try:
        cur.execute(sql, params)
    except psycopg2.Error as error:
        message = error.pgerror or str(error)
        check(error.pgcode == pgcode, f"{sql}: SQLSTATE {error.pgcode}, expected {pgcode}: {message}")
        for fragment in fragments:
            check(fragment in message, f"{sql}: the error does not say '{fragment}': {message}")
        cur.connection.rollback()
        return
    fail(f"not refused: {sql}")


def psycopg2_checks():
    start = ledger()
    conn = psycopg2.connect(DSN)
    cur = conn.cursor()
    check(conn.server_version >= 150000, f"server_version {conn.server_version}")
    # Session statements drivers send (psycopg2 wraps them in BEGIN ... COMMIT).
    cur.execute("SET extra_float_digits = 3")
    cur.execute("SET application_name = %s", ("dpgate-python-test",))
    cur.execute("SHOW application_name")
    check(cur.fetchone()[0] == "dpgate-python-test", "application_name was not set")
    cur.execute("SHOW transaction isolation level")
    check(cur.fetchone()[0] == "read committed", "transaction isolation level")
    cur.execute("SELECT version()")
    check(cur.fetchone()[0].startswith("PostgreSQL 15"), "version()")
    cur.execute("select current_schema()")
    check(cur.fetchone()[0] == "public", "current_schema() is not the session's public")
    conn.commit()

    # Catalog browsing through information_schema, with parameters.
    cur.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", ("public",)
    )
    check([r[0] for r in cur.fetchall()] == ["cities", "patients"], "information_schema.tables")
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        ("public", "patients"),
    )
    check(
        cur.fetchall()
        == [("id", "integer"), ("city", "text"), ("age", "integer"), ("charge", "numeric")],
        "information_schema.columns of patients",
    )
    conn.commit()
    check(ledger() == start, "catalog reads were charged")

    # A private GROUP BY with a parameter, inside psycopg2's transaction.
    before = ledger()
    cur.execute(
        "SELECT city, count(*), sum(charge) FROM patients WHERE age > %s GROUP BY city ORDER BY city", (30,)
    )
    rows = cur.fetchall()
    check([d.name for d in cur.description] == ["city", "count", "sum"], "column names")
    receipt = conn.notices[-1]
    check("dpgate: charged epsilon=0.5" in receipt, f"no privacy receipt: {conn.notices}")
    check_release("psycopg2 age > 30", rows, 30, receipt, "count", "sum")
    conn.commit()
    before = expect_one_charge(before, 0.5, "psycopg2 GROUP BY")

    # Autocommit, another constant, a string parameter and a larger epsilon.
    conn.autocommit = True
    cur.execute("SET dp.epsilon = %s", (1,))
    cur.execute(
        "SELECT city, count(*) FROM patients WHERE age > %s AND city <> %s GROUP BY city", (50, "nowhere")
    )
    rows = cur.fetchall()
    receipt = conn.notices[-1]
    check("charged epsilon=1" in receipt, f"SET dp.epsilon was not applied: {receipt}")
    check_release("psycopg2 age > 50", rows, 50, receipt, "count")
    before = expect_one_charge(before, 1.0, "psycopg2 autocommit GROUP BY")
    cur.execute("RESET dp.epsilon")
    conn.autocommit = False

    # Refusals are psycopg2 exceptions with dpgate's explanation; nothing is charged.
    expect_refused(cur, "SELECT * FROM patients", None, "private table public.patients", "aggregates")
    expect_refused(cur, "SELECT id FROM patients WHERE age > %s", (90,), "public.patients")
    expect_refused(cur, "SELECT * FROM pg_statistic", None, "pg_statistic is denied")
    expect_refused(cur, "SELECT pg_read_file(%s)", ("/etc/passwd",), "pg_read_file is denied")
    expect_refused(cur, "UPDATE patients SET age = 1", None, "read-only")
    check(ledger() == before, "a refused statement was charged")
    conn.close()


class Receipts(logging.Handler):
    """SQLAlchemy's psycopg2 dialect moves NOTICEs (dpgate's privacy receipts)
    to the sqlalchemy.dialects.postgresql logger at INFO and clears them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def last(self):
        check(self.messages, "no privacy receipt was logged")
        return self.messages[-1]


def sqlalchemy_checks():
    receipts = Receipts()
    notice_logger = logging.getLogger("sqlalchemy.dialects.postgresql")
    notice_logger.setLevel(logging.INFO)
    notice_logger.addHandler(receipts)
    before = ledger()
    engine = create_engine(URL)
    inspector = inspect(engine)
    check(inspector.default_schema_name == "public", f"default schema {inspector.default_schema_name}")
    check("public" in inspector.get_schema_names(), "get_schema_names")
    check(sorted(inspector.get_table_names()) == ["cities", "patients"], "get_table_names")
    check(inspector.has_table("patients"), "has_table")
    columns = {c["name"]: c for c in inspector.get_columns("patients")}
    check(list(columns) == ["id", "city", "age", "charge"], f"get_columns: {list(columns)}")
    check(isinstance(columns["age"]["type"], sqlalchemy.Integer), "age is not an Integer")
    check(isinstance(columns["charge"]["type"], sqlalchemy.Numeric), "charge is not Numeric")
    check(not columns["city"]["nullable"], "city is NOT NULL")
    check(inspector.get_pk_constraint("patients")["constrained_columns"] == ["id"], "get_pk_constraint")
    fks = inspector.get_foreign_keys("patients")
    check(
        len(fks) == 1
        and fks[0]["constrained_columns"] == ["city"]
        and fks[0]["referred_table"] == "cities"
        and fks[0]["referred_columns"] == ["code"],
        f"get_foreign_keys: {fks}",
    )
    indexes = inspector.get_indexes("patients")
    check(
        [(i["name"], i["column_names"]) for i in indexes] == [("patients_age_idx", ["age"])],
        f"get_indexes: {indexes}",
    )
    check(inspector.get_table_comment("patients")["text"] == "one row per patient", "get_table_comment")
    check(ledger() == before, "SQLAlchemy's introspection was charged")

    # A textual query with a bound parameter.
    with engine.connect() as conn:
        result = conn.execute(
            text("SELECT city, count(*) AS n, sum(charge) AS total FROM patients WHERE age > :a GROUP BY city"),
            {"a": 40},
        )
        rows = [tuple(r) for r in result]
    receipt = receipts.last()
    check("dpgate: charged epsilon=0.5" in receipt, f"not a fresh charge: {receipt}")
    check_release("SQLAlchemy text() age > 40", rows, 40, receipt, "n", "total")
    before = expect_one_charge(before, 0.5, "SQLAlchemy text()")

    # The SQL a BI tool builds from reflected metadata (qualified columns, bound parameters).
    patients = Table("patients", MetaData(), autoload_with=engine)
    query = (
        select(patients.c.city, func.count().label("people"), func.sum(patients.c.charge).label("billed"))
        .where(patients.c.age > 55)
        .group_by(patients.c.city)
    )
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    receipt = receipts.last()
    check("dpgate: charged epsilon=0.5" in receipt, f"not a fresh charge: {receipt}")
    check_release("SQLAlchemy select() age > 55", rows, 55, receipt, "people", "billed")
    before = expect_one_charge(before, 0.5, "SQLAlchemy select()")

    # Refusals surface as SQLAlchemy DBAPI errors carrying dpgate's text.
    for statement, fragment in [
        (select(patients), "of public.patients is refused"),
        (select(patients.c.city, func.max(patients.c.age)).group_by(patients.c.city), "max"),
    ]:
        try:
            with engine.connect() as conn:
                conn.execute(statement).fetchall()
        except sqlalchemy.exc.DBAPIError as error:
            check(fragment in str(error.orig), f"refusal without '{fragment}': {error.orig}")
        else:
            fail(f"not refused: {statement}")
    check(ledger() == before, "a refused statement was charged")
    engine.dispose()


psycopg2_checks()
sqlalchemy_checks()
check(released_sums >= 2 and exact_sums < released_sums, "every released sum equals the truth: no noise")
print(f"python client test: all checks passed ({checked} released values within bounds)")
