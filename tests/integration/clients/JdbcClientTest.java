// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) against dpgate:
// catalog introspection (DatabaseMetaData, ResultSetMetaData), a private
// aggregate as a PreparedStatement with a bound parameter run past the driver's
// prepareThreshold (server-side named statement, binary int8/float8 results),
// cursor fetches (Execute with max_rows, PortalSuspended), the result cache,
// dpgate commands, and refusals as SQLExceptions carrying dpgate's explanation.
// Started by jdbc_test.sh (compiled there with javac; no build tool), which sets:
//   DPGATE_URL            jdbc:postgresql://127.0.0.1:PORT/DB (dpgate)
//   TRUTH_URL, TRUTH_USER, TRUTH_PASSWORD   the same database, straight to PostgreSQL
//   ALICE_PASSWORD, BOB_PASSWORD            analysts of lib.sh (budgets 100 and 0.6)
// Every check runs even when an earlier one failed (unless it depends on it);
// the exit status is 1 when any failed. The last line says how many executions
// should be in the ledger: "charges alice=N".
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.sql.Types;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.postgresql.PGResultSetMetaData;
import org.postgresql.PGStatement;

public class JdbcClientTest {
  // Bound on released values. The receipt states each column's noise scale b.
  // Counts get discrete Laplace noise and P(|X| >= t) <= 2 exp(-t / b); sums get
  // snapped Laplace noise, the same tail plus a rounding below b / 2^20. With
  // t = b (ln(2 MAX_CHECKS / 1e-6) + 1) for each of at most MAX_CHECKS released
  // values, the union bound puts the chance that a correct dpgate fails any
  // value check below 1e-6. (The crafted data has no value outside the declared
  // bounds and one row per unit, so clamping leaves the truth unchanged.)
  static final int MAX_CHECKS = 120;
  static final double FAILURE_PROBABILITY = 1e-6;
  static int checked = 0;
  static int noisySums = 0;
  static int aliceCharges = 0;
  static final List<String> failures = new ArrayList<>();

  static final String AGG =
      "SELECT city, COUNT(*) AS n, SUM(charge) AS total FROM patients WHERE age > ? GROUP BY city ORDER BY city";
  static final String TRUTH =
      "SELECT v.city, count(p.id), coalesce(sum(p.charge), 0) FROM (VALUES ('east'), ('north'), ('south')) v(city) "
          + "LEFT JOIN public.patients p ON p.city = v.city AND p.age > ? GROUP BY v.city ORDER BY v.city";

  interface Step {
    void run() throws Exception;
  }

  static void step(String name, Step s) {
    try {
      s.run();
      System.out.println("ok: " + name);
    } catch (Throwable e) {
      String detail = e.toString();
      if (e instanceof SQLException) detail += " [SQLSTATE " + ((SQLException) e).getSQLState() + "]";
      failures.add(name + ": " + detail);
      System.out.println("FAIL: " + name + ": " + detail);
    }
  }

  static void require(boolean ok, String message) {
    if (!ok) throw new AssertionError(message);
  }

  static Connection connect(String user, String password) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", user);
    p.setProperty("password", password);
    p.setProperty("sslmode", "disable");
    p.setProperty("connectTimeout", "10");
    p.setProperty("socketTimeout", "120");
    p.setProperty("loginTimeout", "20");
    p.setProperty("ApplicationName", "dpgate-jdbc-test");
    return DriverManager.getConnection(System.getenv("DPGATE_URL"), p);
  }

  static final class Row {
    final String city;
    final long count;
    final double sum;

    Row(String city, long count, double sum) {
      this.city = city;
      this.count = count;
      this.sum = sum;
    }

    @Override
    public String toString() {
      return city + "|" + count + "|" + sum;
    }
  }

  static List<Row> rows(ResultSet rs) throws SQLException {
    List<Row> out = new ArrayList<>();
    while (rs.next()) out.add(new Row(rs.getString(1), rs.getLong(2), rs.getDouble(3)));
    return out;
  }

  static Connection truthConnection;

  static List<Row> truth(int age) throws SQLException {
    try (PreparedStatement ps = truthConnection.prepareStatement(TRUTH)) {
      ps.setInt(1, age);
      try (ResultSet rs = ps.executeQuery()) {
        return rows(rs);
      }
    }
  }

  static String warnings(SQLWarning w) {
    StringBuilder sb = new StringBuilder();
    for (; w != null; w = w.getNextWarning()) sb.append(w.getMessage()).append('\n');
    return sb.toString();
  }

  static double scale(String receipt, String column) {
    Matcher m = Pattern.compile("; " + column + ": [^;(]* scale ([0-9.eE+-]+)").matcher(receipt);
    require(m.find(), "no " + column + " noise scale in the receipt: " + receipt);
    return Double.parseDouble(m.group(1));
  }

  // Released rows against the truth, within the bound derived from the receipt's scales.
  static void checkRelease(String name, List<Row> released, List<Row> truth, String receipt) {
    double k = Math.log(2.0 * MAX_CHECKS / FAILURE_PROBABILITY) + 1;
    // The receipt names each released column by its output name (AGG: n, total).
    double countBound = k * scale(receipt, "n");
    double sumBound = k * scale(receipt, "total");
    require(released.size() == 3, name + ": expected the 3 declared cities, got " + released);
    for (int i = 0; i < 3; i++) {
      Row r = released.get(i), t = truth.get(i);
      require(r.city.equals(t.city), name + ": city " + r.city + " where " + t.city + " was expected");
      require(Math.abs(r.count - t.count) <= countBound,
          name + " " + r.city + ": count " + r.count + " is " + Math.abs(r.count - t.count)
              + " from the truth " + t.count + ", bound " + countBound);
      require(Math.abs(r.sum - t.sum) <= sumBound,
          name + " " + r.city + ": sum " + r.sum + " is " + Math.abs(r.sum - t.sum)
              + " from the truth " + t.sum + ", bound " + sumBound);
      checked += 2;
      if (r.sum != t.sum) noisySums++;
    }
    require(checked <= MAX_CHECKS, "more value checks than the stated bound allows for");
  }

  // SHOW dp.budget: spent epsilon of one analyst this period.
  static double spent(Connection c, String analyst) throws SQLException {
    try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SHOW dp.budget")) {
      ResultSetMetaData md = rs.getMetaData();
      List<String> names = new ArrayList<>();
      for (int i = 1; i <= md.getColumnCount(); i++) names.add(md.getColumnName(i));
      require(names.equals(List.of("dataset", "kind", "principal", "period", "remaining_epsilon",
              "remaining_delta", "spent_epsilon", "granted_epsilon")),
          "SHOW dp.budget columns: " + names);
      while (rs.next()) {
        if ("analyst".equals(rs.getString("kind")) && analyst.equals(rs.getString("principal"))) {
          return Double.parseDouble(rs.getString("spent_epsilon"));
        }
      }
    }
    throw new AssertionError("SHOW dp.budget has no row for analyst " + analyst);
  }

  static void requireCharged(String name, double before, double after, double epsilon) {
    require(Math.abs(after - before - epsilon) < 1e-9,
        name + ": spent epsilon went from " + before + " to " + after + ", expected exactly +" + epsilon);
  }

  // A statement dpgate must refuse: a driver exception carrying the explanation, nothing charged.
  static void refused(Connection c, String sql, String sqlstate, String... explanation) throws Exception {
    double before = spent(c, "alice");
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      if (sql.contains("?")) ps.setInt(1, 40);
      ps.executeQuery().close();
      throw new AssertionError("not refused: " + sql);
    } catch (SQLException e) {
      require(sqlstate.equals(e.getSQLState()), sql + ": SQLSTATE " + e.getSQLState() + ", expected " + sqlstate
          + " (" + e.getMessage() + ")");
      for (String part : explanation) {
        require(e.getMessage().contains(part), sql + ": message lacks '" + part + "': " + e.getMessage());
      }
    }
    requireCharged("refused " + sql, before, spent(c, "alice"), 0);
  }

  public static void main(String[] args) throws Exception {
    String pgUrl = System.getenv("TRUTH_URL");
    truthConnection = DriverManager.getConnection(pgUrl, System.getenv("TRUTH_USER"), System.getenv("TRUTH_PASSWORD"));
    Connection c = connect("alice", System.getenv("ALICE_PASSWORD"));
    System.out.println("connected through dpgate: " + c.getMetaData().getDatabaseProductName() + " "
        + c.getMetaData().getDatabaseProductVersion() + ", driver " + c.getMetaData().getDriverVersion());

    // --- catalog introspection: forwarded, free -----------------------------------
    double catalogStart = spent(c, "alice");
    step("DatabaseMetaData.getTables lists the private and the public table", () -> {
      List<String> tables = new ArrayList<>();
      String remarks = null;
      try (ResultSet rs = c.getMetaData().getTables(null, "public", "%", new String[] {"TABLE"})) {
        while (rs.next()) {
          tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
          if ("patients".equals(rs.getString("TABLE_NAME"))) remarks = rs.getString("REMARKS");
        }
      }
      require(tables.equals(List.of("public.cities:TABLE", "public.patients:TABLE")), "getTables: " + tables);
      require("one row per patient".equals(remarks), "getTables REMARKS of patients: " + remarks);
    });
    step("DatabaseMetaData.getColumns lists the columns of both tables", () -> {
      List<String> cols = new ArrayList<>();
      try (ResultSet rs = c.getMetaData().getColumns(null, "public", "%", "%")) {
        while (rs.next()) {
          cols.add(rs.getString("TABLE_NAME") + "." + rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME")
              + ":" + rs.getInt("DATA_TYPE") + ":" + rs.getInt("ORDINAL_POSITION"));
        }
      }
      List<String> expected = List.of("cities.code:text:" + Types.VARCHAR + ":1", "cities.name:text:" + Types.VARCHAR + ":2",
          "patients.id:int4:" + Types.INTEGER + ":1", "patients.city:text:" + Types.VARCHAR + ":2",
          "patients.age:int4:" + Types.INTEGER + ":3", "patients.charge:numeric:" + Types.NUMERIC + ":4");
      require(cols.equals(expected), "getColumns: " + cols + ", expected " + expected);
    });
    step("DatabaseMetaData.getPrimaryKeys of the private table", () -> {
      List<String> keys = new ArrayList<>();
      try (ResultSet rs = c.getMetaData().getPrimaryKeys(null, "public", "patients")) {
        while (rs.next()) keys.add(rs.getString("COLUMN_NAME"));
      }
      require(keys.equals(List.of("id")), "getPrimaryKeys(patients): " + keys);
    });
    // A public table through a PreparedStatement: exact rows. ResultSetMetaData.isNullable
    // and isAutoIncrement make the driver read pg_class/pg_attribute for the columns' table.
    step("public table: PreparedStatement rows and ResultSetMetaData", () -> {
      try (PreparedStatement ps = c.prepareStatement("SELECT code, name FROM cities WHERE code <> ? ORDER BY code")) {
        ps.setString(1, "east");
        try (ResultSet rs = ps.executeQuery()) {
          List<String> got = new ArrayList<>();
          while (rs.next()) got.add(rs.getString(1) + "=" + rs.getString(2));
          require(got.equals(List.of("north=North", "south=South")), "cities rows: " + got);
          ResultSetMetaData md = rs.getMetaData();
          require(md.isNullable(1) == ResultSetMetaData.columnNoNulls, "cities.code isNullable: " + md.isNullable(1));
          require(!md.isAutoIncrement(1), "cities.code isAutoIncrement");
          require("cities".equals(((PGResultSetMetaData) md).getBaseTableName(1)),
              "base table of code: " + ((PGResultSetMetaData) md).getBaseTableName(1));
        }
      }
    });
    step("catalog browsing was not charged", () -> requireCharged("catalog", catalogStart, spent(c, "alice"), 0));

    // --- a private aggregate as a PreparedStatement, 7 executions ---------------------
    // prepareThreshold is 5: executions 1-4 use the unnamed statement and text results;
    // from the 5th the driver keeps a named statement (S_n) and, once it has described
    // it, asks for int8/float8 results in binary. Each execution binds another age, so
    // each is a new query and is charged exactly once.
    List<List<Row>> releasedByAge = new ArrayList<>();
    try (PreparedStatement ps = c.prepareStatement(AGG)) {
      for (int i = 0; i < 7; i++) {
        final int age = 30 + i;
        final int execution = i + 1;
        step("private PreparedStatement execution " + execution + " (age > " + age + ")", () -> {
          double before = spent(c, "alice");
          ps.setInt(1, age);
          List<Row> released;
          String receipt;
          boolean binary;
          try (ResultSet rs = ps.executeQuery()) {
            ResultSetMetaData md = rs.getMetaData();
            require(md.getColumnCount() == 3, "column count " + md.getColumnCount());
            require(md.getColumnType(2) == Types.BIGINT && md.getColumnType(3) == Types.DOUBLE,
                "released column types " + md.getColumnTypeName(2) + ", " + md.getColumnTypeName(3)
                    + " (expected int8, float8)");
            require("city".equals(md.getColumnLabel(1)) && "n".equals(md.getColumnLabel(2))
                && "total".equals(md.getColumnLabel(3)), "column labels");
            PGResultSetMetaData pmd = md.unwrap(PGResultSetMetaData.class);
            binary = pmd.getFormat(2) == 1 && pmd.getFormat(3) == 1;
            released = rows(rs);
            receipt = warnings(ps.getWarnings()) + warnings(rs.getWarnings());
          }
          releasedByAge.add(released);
          require(receipt.contains("dpgate: charged epsilon=0.5 delta=0"), "receipt: " + receipt);
          checkRelease("age > " + age, released, truth(age), receipt);
          requireCharged("execution " + execution, before, spent(c, "alice"), 0.5);
          aliceCharges++;
          boolean serverPrepared = ps.unwrap(PGStatement.class).isUseServerPrepare();
          System.out.println("  execution " + execution + ": server-prepared=" + serverPrepared + " binary=" + binary
              + " released=" + released);
          if (execution >= 6) {
            require(serverPrepared, "execution " + execution + " did not use a server-side prepared statement");
            require(binary, "execution " + execution + " did not receive int8/float8 in binary");
          }
        });
      }

      // The same bindings again, now that the driver asks for binary results: the
      // cached noisy rows of the first release (whichever format it was sent in), no charge.
      for (int age : new int[] {36, 30}) {
        step("repeated execution (age > " + age + ") is answered from the cache at no charge", () -> {
          require(releasedByAge.size() == 7, "the 7 executions did not all succeed");
          double before = spent(c, "alice");
          ps.setInt(1, age);
          List<Row> again;
          String receipt;
          try (ResultSet rs = ps.executeQuery()) {
            again = rows(rs);
            receipt = warnings(ps.getWarnings()) + warnings(rs.getWarnings());
          }
          require(receipt.contains("cached answer") && receipt.contains("0 charged"), "receipt: " + receipt);
          List<Row> first = releasedByAge.get(age - 30);
          require(again.toString().equals(first.toString()),
              "cached rows " + again + " differ from the first release " + first);
          requireCharged("cached execution", before, spent(c, "alice"), 0);
        });
      }
    }

    // --- cursor fetch: Execute with max_rows, PortalSuspended, one charge --------------
    step("private aggregate fetched one row at a time in a transaction", () -> {
      double before = spent(c, "alice");
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement(AGG)) {
        ps.setFetchSize(1);
        ps.setInt(1, 37);
        List<Row> released;
        String receipt;
        try (ResultSet rs = ps.executeQuery()) {
          released = rows(rs);
          receipt = warnings(ps.getWarnings()) + warnings(rs.getWarnings()) + warnings(c.getWarnings());
        }
        c.commit();
        require(receipt.contains("dpgate: charged epsilon=0.5"), "receipt: " + receipt);
        checkRelease("age > 37 (fetch size 1)", released, truth(37), receipt);
      } finally {
        c.setAutoCommit(true);
      }
      requireCharged("fetch size 1", before, spent(c, "alice"), 0.5);
      aliceCharges++;
    });

    // --- dpgate commands through the extended protocol ---------------------------------
    step("SET dp.epsilon then a private aggregate charged at that epsilon", () -> {
      double before = spent(c, "alice");
      try (Statement s = c.createStatement()) {
        s.execute("SET dp.epsilon = 2");
        try (ResultSet rs = s.executeQuery("SHOW dp.epsilon")) {
          require(rs.next() && "2".equals(rs.getString(1)), "SHOW dp.epsilon after SET dp.epsilon = 2");
        }
      }
      try (PreparedStatement ps = c.prepareStatement(AGG)) {
        ps.setInt(1, 38);
        List<Row> released;
        String receipt;
        try (ResultSet rs = ps.executeQuery()) {
          released = rows(rs);
          receipt = warnings(ps.getWarnings()) + warnings(rs.getWarnings());
        }
        require(receipt.contains("dpgate: charged epsilon=2 "), "receipt: " + receipt);
        checkRelease("age > 38 at epsilon 2", released, truth(38), receipt);
      } finally {
        try (Statement s = c.createStatement()) {
          s.execute("RESET dp.epsilon");
        }
      }
      requireCharged("SET dp.epsilon = 2", before, spent(c, "alice"), 2);
      aliceCharges++;
    });

    // --- refusals: SQLExceptions with dpgate's explanation, nothing charged ------------
    step("SELECT * FROM patients is refused with the explanation", () ->
        refused(c, "SELECT * FROM patients", "42501", "* over private table public.patients is refused",
            "select group keys and aggregates"));
    step("raw rows with a bound parameter are refused at Parse", () ->
        refused(c, "SELECT id, age FROM patients WHERE age > ?", "42501", "public.patients"));
    step("an unsupported aggregate is refused", () ->
        refused(c, "SELECT city, min(age) FROM patients GROUP BY city", "0A000",
            "the aggregate min is not supported over private data"));
    step("the connection still works after the refusals", () -> {
      try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM cities WHERE code LIKE ?")) {
        ps.setString(1, "%");
        try (ResultSet rs = ps.executeQuery()) {
          require(rs.next() && rs.getLong(1) == 3, "public count over cities");
        }
      }
    });

    // --- budget exhaustion (bob has epsilon 0.6) ---------------------------------------
    step("budget exhaustion surfaces as a driver error naming the budget", () -> {
      try (Connection b = connect("bob", System.getenv("BOB_PASSWORD"));
           PreparedStatement ps = b.prepareStatement("SELECT count(*) FROM patients WHERE age > ?")) {
        ps.setInt(1, 20);
        try (ResultSet rs = ps.executeQuery()) {
          require(rs.next(), "bob's first query returned no row");
        }
        ps.setInt(1, 21);
        try {
          ps.executeQuery().close();
          throw new AssertionError("bob's second query was not refused");
        } catch (SQLException e) {
          require("53400".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState() + ": " + e.getMessage());
          require(e.getMessage().contains("budget exhausted: analyst bob"), "message: " + e.getMessage());
        }
        require(Math.abs(spent(b, "bob") - 0.5) < 1e-9, "bob spent " + spent(b, "bob") + ", expected 0.5");
      }
    });

    step("released values were noisy", () -> require(noisySums >= 1, "every released sum equals the truth"));
    c.close();
    truthConnection.close();
    System.out.println("value checks: " + checked + " (bound for " + MAX_CHECKS + ")");
    System.out.println("charges alice=" + aliceCharges);
    if (!failures.isEmpty()) {
      System.out.println(failures.size() + " JDBC check(s) failed:");
      for (String f : failures) System.out.println("  " + f);
      System.exit(1);
    }
    System.out.println("JDBC client test: all checks passed");
  }
}
