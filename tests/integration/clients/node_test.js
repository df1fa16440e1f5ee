// node-postgres ("pg" from npm, pinned by install-npm.sh) against dpgate: a
// parameterised private aggregate (extended protocol, unnamed statement), a named
// prepared statement run with new and repeated bindings (charged once per new
// execution, the cache answering repeats), information_schema browsing with bound
// parameters, dpgate commands, and refusals as driver errors with dpgate's
// explanation. Started by node_test.sh, which sets:
//   NODE_PG_MODULES   the node_modules directory holding pg
//   DPGATE_PORT, DB, ALICE_PASSWORD, BOB_PASSWORD
//   TRUTH_HOST, TRUTH_PORT, TRUTH_USER, TRUTH_PASSWORD   PostgreSQL itself
// Every check runs even when an earlier one failed; exit status 1 if any did.
// The last line says how many executions should be in the ledger: "charges alice=N".
'use strict';
const path = require('path');
const { Client } = require(path.join(process.env.NODE_PG_MODULES, 'pg'));

// Bound on released values: the receipt states each column's noise scale b.
// Counts get discrete Laplace noise, P(|X| >= t) <= 2 exp(-t / b); sums snapped
// Laplace, the same tail plus a rounding below b / 2^20. With
// t = b (ln(2 MAX_CHECKS / 1e-6) + 1) for each of at most MAX_CHECKS released
// values, the chance that a correct dpgate fails any value check is below 1e-6.
// (One row per unit and every value inside the declared bounds: clamping
// leaves the truth unchanged.)
const MAX_CHECKS = 60;
const FAILURE_PROBABILITY = 1e-6;
const AGG = 'SELECT city, count(*) AS n, sum(charge) AS total FROM patients WHERE age > $1 GROUP BY city ORDER BY city';
const TRUTH =
  "SELECT v.city, count(p.id)::text AS n, coalesce(sum(p.charge), 0)::float8 AS total " +
  "FROM (VALUES ('east'), ('north'), ('south')) v(city) " +
  'LEFT JOIN public.patients p ON p.city = v.city AND p.age > $1 GROUP BY v.city ORDER BY v.city';
const INT8 = 20;
const FLOAT8 = 701;

let checked = 0;
let noisySums = 0;
let aliceCharges = 0;
const failures = [];

function require_(ok, message) {
  if (!ok) throw new Error(message);
}

async function step(name, fn) {
  try {
    await fn();
    console.log(`ok: ${name}`);
  } catch (e) {
    const detail = `${e.message}${e.code ? ` [SQLSTATE ${e.code}]` : ''}`;
    failures.push(`${name}: ${detail}`);
    console.log(`FAIL: ${name}: ${detail}`);
  }
}

function connect(user, password, port, database) {
  const c = new Client({
    host: '127.0.0.1', port, database, user, password, ssl: false,
    connectionTimeoutMillis: 10000, query_timeout: 120000, application_name: 'dpgate-node-test',
  });
  c.notices = [];
  c.on('notice', (n) => c.notices.push(n.message));
  return c;
}

// Runs a query and returns { result, receipt } (the notices it produced).
async function run(c, query, values) {
  c.notices = [];
  const result = await c.query(query, values);
  return { result, receipt: c.notices.join('\n') };
}

function scale(receipt, column) {
  const m = new RegExp(`; ${column}: [^;(]* scale ([0-9.eE+-]+)`).exec(receipt);
  require_(m, `no ${column} noise scale in the receipt: ${receipt}`);
  return Number(m[1]);
}

function checkRelease(name, result, truth, receipt) {
  const k = Math.log((2 * MAX_CHECKS) / FAILURE_PROBABILITY) + 1;
  // The receipt names each released column by its output name.
  const countBound = k * scale(receipt, 'n');
  const sumBound = k * scale(receipt, 'total');
  require_(result.fields.map((f) => f.name).join() === 'city,n,total', `${name}: columns ${result.fields.map((f) => f.name)}`);
  require_(result.fields[1].dataTypeID === INT8 && result.fields[2].dataTypeID === FLOAT8,
    `${name}: released column types ${result.fields[1].dataTypeID}, ${result.fields[2].dataTypeID} (expected int8 20, float8 701)`);
  require_(result.rows.length === 3, `${name}: expected the 3 declared cities, got ${JSON.stringify(result.rows)}`);
  for (let i = 0; i < 3; i++) {
    const r = result.rows[i];
    const t = truth[i];
    require_(r.city === t.city, `${name}: city ${r.city} where ${t.city} was expected`);
    // node-pg returns int8 as a string (exact) and float8 as a number.
    require_(/^-?[0-9]+$/.test(r.n), `${name} ${r.city}: count ${JSON.stringify(r.n)} is not an integer`);
    const dc = Math.abs(Number(BigInt(r.n) - BigInt(t.n)));
    require_(dc <= countBound, `${name} ${r.city}: count ${r.n} is ${dc} from the truth ${t.n}, bound ${countBound}`);
    require_(typeof r.total === 'number', `${name} ${r.city}: sum ${JSON.stringify(r.total)} is not a number`);
    const ds = Math.abs(r.total - t.total);
    require_(ds <= sumBound, `${name} ${r.city}: sum ${r.total} is ${ds} from the truth ${t.total}, bound ${sumBound}`);
    checked += 2;
    if (r.total !== t.total) noisySums++;
  }
  require_(checked <= MAX_CHECKS, 'more value checks than the stated bound allows for');
}

// SHOW dp.budget through a named prepared statement (extended protocol).
async function spent(c, analyst) {
  const r = await c.query({ name: 'dp_budget', text: 'SHOW dp.budget' });
  const names = r.fields.map((f) => f.name).join();
  require_(names === 'dataset,kind,principal,period,remaining_epsilon,remaining_delta,spent_epsilon,granted_epsilon',
    `SHOW dp.budget columns: ${names}`);
  const row = r.rows.find((x) => x.kind === 'analyst' && x.principal === analyst);
  require_(row, `SHOW dp.budget has no row for analyst ${analyst}: ${JSON.stringify(r.rows)}`);
  return Number(row.spent_epsilon);
}

function requireCharged(name, before, after, epsilon) {
  require_(Math.abs(after - before - epsilon) < 1e-9,
    `${name}: spent epsilon went from ${before} to ${after}, expected exactly +${epsilon}`);
}

async function refused(c, query, values, sqlstate, ...explanation) {
  const before = await spent(c, 'alice');
  let error = null;
  try {
    await c.query(query, values);
  } catch (e) {
    error = e;
  }
  const text = typeof query === 'string' ? query : query.text;
  require_(error, `not refused: ${text}`);
  require_(error.code === sqlstate, `${text}: SQLSTATE ${error.code}, expected ${sqlstate} (${error.message})`);
  for (const part of explanation) {
    require_(error.message.includes(part), `${text}: message lacks '${part}': ${error.message}`);
  }
  requireCharged(`refused ${text}`, before, await spent(c, 'alice'), 0);
}

async function main() {
  const env = process.env;
  const truthClient = new Client({
    host: env.TRUTH_HOST, port: Number(env.TRUTH_PORT), database: env.DB, user: env.TRUTH_USER,
    password: env.TRUTH_PASSWORD, ssl: false, connectionTimeoutMillis: 10000,
  });
  await truthClient.connect();
  const truth = async (age) => (await truthClient.query(TRUTH, [age])).rows.map((r) => ({ ...r, total: Number(r.total) }));

  const c = connect('alice', env.ALICE_PASSWORD, Number(env.DPGATE_PORT), env.DB);
  await c.connect();
  console.log(`connected through dpgate: ${(await c.query('SELECT version() AS v')).rows[0].v}`);

  // --- catalog browsing with bound parameters: forwarded, free -------------------
  const catalogStart = await spent(c, 'alice');
  await step('information_schema.tables lists the private and the public table', async () => {
    const r = await c.query('SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name', ['public']);
    const got = r.rows.map((x) => `${x.table_name}:${x.table_type}`).join();
    require_(got === 'cities:BASE TABLE,patients:BASE TABLE', `tables: ${got}`);
  });
  await step('information_schema.columns lists the columns of the private table', async () => {
    const r = await c.query({
      name: 'columns_of',
      text: 'SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position',
      values: ['public', 'patients'],
    });
    const got = r.rows.map((x) => `${x.column_name}:${x.data_type}`).join();
    require_(got === 'id:integer,city:text,age:integer,charge:numeric', `columns: ${got}`);
  });
  await step('public table with a bound parameter: exact rows', async () => {
    const r = await c.query('SELECT code, name FROM cities WHERE code <> $1 ORDER BY code', ['east']);
    require_(JSON.stringify(r.rows) === '[{"code":"north","name":"North"},{"code":"south","name":"South"}]', `cities: ${JSON.stringify(r.rows)}`);
  });
  await step('catalog browsing was not charged', async () => requireCharged('catalog', catalogStart, await spent(c, 'alice'), 0));

  // --- a parameterised private aggregate (unnamed statement) ------------------------
  await step('parameterised private aggregate (age > 30)', async () => {
    const before = await spent(c, 'alice');
    const { result, receipt } = await run(c, AGG, [30]);
    require_(receipt.includes('dpgate: charged epsilon=0.5 delta=0'), `receipt: ${receipt}`);
    checkRelease('age > 30', result, await truth(30), receipt);
    requireCharged('age > 30', before, await spent(c, 'alice'), 0.5);
    aliceCharges++;
  });

  // --- a named prepared statement: Parse once, then Bind/Execute ---------------------
  const released = {};
  for (const age of [40, 41]) {
    await step(`named prepared statement, new binding (age > ${age})`, async () => {
      const before = await spent(c, 'alice');
      const { result, receipt } = await run(c, { name: 'dp_agg', text: AGG, values: [age] });
      require_(receipt.includes('dpgate: charged epsilon=0.5 delta=0'), `receipt: ${receipt}`);
      checkRelease(`age > ${age}`, result, await truth(age), receipt);
      requireCharged(`age > ${age}`, before, await spent(c, 'alice'), 0.5);
      aliceCharges++;
      released[age] = JSON.stringify(result.rows);
    });
  }
  await step('named prepared statement, repeated binding: the cached rows, no charge', async () => {
    const before = await spent(c, 'alice');
    const { result, receipt } = await run(c, { name: 'dp_agg', text: AGG, values: [40] });
    require_(receipt.includes('cached answer') && receipt.includes('0 charged'), `receipt: ${receipt}`);
    require_(JSON.stringify(result.rows) === released[40], `cached rows ${JSON.stringify(result.rows)} differ from ${released[40]}`);
    requireCharged('cached', before, await spent(c, 'alice'), 0);
  });
  await step('SET dp.epsilon, then the named statement is charged at that epsilon', async () => {
    const before = await spent(c, 'alice');
    await c.query({ name: 'set_eps', text: 'SET dp.epsilon = 2' });
    const show = await c.query({ name: 'show_eps', text: 'SHOW dp.epsilon' });
    require_(show.rows.length === 1 && Object.values(show.rows[0])[0] === '2', `SHOW dp.epsilon: ${JSON.stringify(show.rows)}`);
    try {
      const { result, receipt } = await run(c, { name: 'dp_agg', text: AGG, values: [40] });
      require_(receipt.includes('dpgate: charged epsilon=2 '), `receipt: ${receipt}`);
      checkRelease('age > 40 at epsilon 2', result, await truth(40), receipt);
    } finally {
      await c.query('RESET dp.epsilon');
    }
    requireCharged('epsilon 2', before, await spent(c, 'alice'), 2);
    aliceCharges++;
  });

  // --- refusals: driver errors with dpgate's explanation, nothing charged ----------
  await step('SELECT * FROM patients (simple protocol) is refused with the explanation', () =>
    refused(c, 'SELECT * FROM patients', undefined, '42501', '* over private table public.patients is refused', 'select group keys and aggregates'));
  await step('raw rows with a bound parameter are refused', () =>
    refused(c, 'SELECT id, age FROM patients WHERE age > $1', [40], '42501', 'public.patients'));
  await step('a named statement selecting raw rows is refused at Parse', () =>
    refused(c, { name: 'raw_rows', text: 'SELECT * FROM patients WHERE city = $1', values: ['north'] }, undefined,
      '42501', '* over private table public.patients is refused'));
  await step('an unsupported aggregate is refused', () =>
    refused(c, 'SELECT city, max(charge) FROM patients WHERE age > $1 GROUP BY city', [20], '0A000',
      'the aggregate max is not supported over private data'));
  await step('a wrong number of bound parameters is refused before any charge', () =>
    refused(c, AGG, [30, 31], '08P01', 'bind message supplies 2 parameters'));
  await step('the connection and the named statement still work after the refusals', async () => {
    const { receipt } = await run(c, { name: 'dp_agg', text: AGG, values: [41] });
    require_(receipt.includes('cached answer'), `receipt: ${receipt}`);
  });

  // --- budget exhaustion (bob has epsilon 0.6) -------------------------------------
  await step('budget exhaustion surfaces as a driver error naming the budget', async () => {
    const b = connect('bob', env.BOB_PASSWORD, Number(env.DPGATE_PORT), env.DB);
    await b.connect();
    try {
      const q = { name: 'bob_count', text: 'SELECT count(*) AS n FROM patients WHERE age > $1' };
      const first = await b.query({ ...q, values: [20] });
      require_(first.rows.length === 1, "bob's first query returned no row");
      let error = null;
      try {
        await b.query({ ...q, values: [21] });
      } catch (e) {
        error = e;
      }
      require_(error, "bob's second query was not refused");
      require_(error.code === '53400', `SQLSTATE ${error.code}: ${error.message}`);
      require_(error.message.includes('budget exhausted: analyst bob'), `message: ${error.message}`);
      require_(Math.abs((await spent(b, 'bob')) - 0.5) < 1e-9, 'bob was not charged exactly 0.5');
    } finally {
      await b.end();
    }
  });

  await step('released values were noisy', async () => require_(noisySums >= 1, 'every released sum equals the truth'));
  await c.end();
  await truthClient.end();
  console.log(`value checks: ${checked} (bound for ${MAX_CHECKS})`);
  console.log(`charges alice=${aliceCharges}`);
  if (failures.length) {
    console.log(`${failures.length} node-pg check(s) failed:`);
    for (const f of failures) console.log(`  ${f}`);
    process.exit(1);
  }
  console.log('node-pg client test: all checks passed');
}

main().catch((e) => {
  console.log(`FAIL: ${e.stack || e}${e.code ? ` [SQLSTATE ${e.code}]` : ''}`);
  process.exit(1);
});
