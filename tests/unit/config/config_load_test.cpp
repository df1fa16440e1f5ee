// Good configs: the DESIGN.md §4 example loads with every field as written;
// optional keys take their documented defaults; ${VAR} substitution works.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config_test_util.h"

namespace dpgate::config::testing {
namespace {

using Catch::Matchers::Contains;

// A scratch directory removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "dpgate-config-test.XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
  }
};

// DESIGN.md §4, with a well-formed verifier in place of the elided one.
std::string DesignExample() {
  return R"(listen: { host: 127.0.0.1, port: 6543 }
tls: { cert: server.crt, key: server.key }          # optional; required for non-local listen
upstream:
  dsn: "host=127.0.0.1 port=5432 dbname=warehouse user=dp_reader password=..."
  pool_size: 16
ledger:
  dsn: "host=127.0.0.1 port=5432 dbname=warehouse user=dp_ledger password=..."
auth: scram                                          # or: trust (local demos only)
analysts:
  - name: alice
    scram: ")" +
         kVerifier + R"("          # from `dpgate passwd alice`
    budget: { epsilon: 10.0, delta: 1.0e-6, period: month }   # period: day|week|month|never
query:
  epsilon: 0.5            # default per query
  delta: 1.0e-7
  max_epsilon: 2.0        # SET dp.epsilon may not exceed this
  mechanism: laplace      # or gaussian
  cache_ttl: 1h
datasets:
  - name: hr
    budget: { epsilon: 50.0, delta: 1.0e-5, period: month }  # global, all analysts together
    tables:
      - name: public.employees
        privacy_unit: employee_id
        max_groups_contributed: 4
        max_rows_per_group: 1
        columns:
          salary: { lower: 0, upper: 500000 }
          age: { lower: 18, upper: 100 }
          region: { values: [north, south, east, west] }   # public keys: no thresholding
      - name: public.regions
        public: true
)";
}

TEST_CASE("the DESIGN.md example loads with every field", "[config]") {
  TempDir dir;
  dir.Write("server.crt", "cert");
  dir.Write("server.key", "key");
  dir.Write("dpgate.yaml", DesignExample());
  const std::string file = (dir.path / "dpgate.yaml").string();
  auto result = LoadConfig(file);
  if (!result.ok()) FAIL(result.error().message);
  const Config& c = *result;

  CHECK(c.source_path == file);
  CHECK(c.listen.host == "127.0.0.1");
  CHECK(c.listen.port == 6543);
  REQUIRE(c.tls.has_value());
  // relative to the config file's directory, not the working directory
  CHECK(c.tls->cert == (dir.path / "server.crt").string());
  CHECK(c.tls->key == (dir.path / "server.key").string());
  CHECK(c.upstream.dsn == "host=127.0.0.1 port=5432 dbname=warehouse user=dp_reader password=...");
  CHECK(c.upstream.pool_size == 16);
  CHECK(c.upstream.pool_mode == dpgate::config::PoolMode::kSession);
  CHECK(c.ledger.dsn == "host=127.0.0.1 port=5432 dbname=warehouse user=dp_ledger password=...");
  CHECK(c.ledger.schema == "dp_ledger");
  CHECK(c.auth == AuthMode::kScram);

  REQUIRE(c.analysts.size() == 1);
  CHECK(c.analysts[0].name == "alice");
  CHECK(c.analysts[0].scram == kVerifier);
  CHECK(c.analysts[0].budget.epsilon == 10.0);
  CHECK(c.analysts[0].budget.delta == 1.0e-6);
  CHECK(c.analysts[0].budget.period == Period::kMonth);

  CHECK(c.query.epsilon == 0.5);
  CHECK(c.query.delta == 1.0e-7);
  CHECK(c.query.max_epsilon == 2.0);
  CHECK(c.query.mechanism == Mechanism::kLaplace);
  CHECK(c.query.cache_ttl == std::chrono::hours(1));

  REQUIRE(c.datasets.size() == 1);
  const Dataset& hr = c.datasets[0];
  CHECK(hr.name == "hr");
  CHECK(hr.budget.epsilon == 50.0);
  CHECK(hr.budget.delta == 1.0e-5);
  CHECK(hr.budget.period == Period::kMonth);
  REQUIRE(hr.tables.size() == 2);

  const TableSpec& employees = hr.tables[0];
  CHECK(employees.schema == "public");
  CHECK(employees.name == "employees");
  CHECK(employees.qualified_name() == "public.employees");
  CHECK_FALSE(employees.is_public);
  CHECK(employees.privacy_unit == "employee_id");
  CHECK(employees.max_groups_contributed == 4);
  CHECK(employees.max_rows_per_group == 1);
  REQUIRE(employees.columns.size() == 3);
  CHECK(employees.columns[0].name == "salary");  // order as written
  CHECK(employees.columns[0].lower == 0.0);
  CHECK(employees.columns[0].upper == 500000.0);
  CHECK(employees.columns[0].has_bounds());
  CHECK_FALSE(employees.columns[0].has_public_values());
  CHECK(employees.columns[1].name == "age");
  CHECK(employees.columns[1].lower == 18.0);
  CHECK(employees.columns[1].upper == 100.0);
  CHECK(employees.columns[2].name == "region");
  CHECK_FALSE(employees.columns[2].has_bounds());
  CHECK(employees.columns[2].values == std::vector<std::string>{"north", "south", "east", "west"});

  const TableSpec& regions = hr.tables[1];
  CHECK(regions.qualified_name() == "public.regions");
  CHECK(regions.is_public);
  CHECK(regions.privacy_unit.empty());
  CHECK(regions.columns.empty());

  // lookups
  REQUIRE(c.FindAnalyst("alice") != nullptr);
  CHECK(c.FindAnalyst("alice")->budget.epsilon == 10.0);
  CHECK(c.FindAnalyst("bob") == nullptr);
  auto ref = c.FindTable("public", "employees");
  REQUIRE(ref.has_value());
  CHECK(ref->dataset == &hr);
  CHECK(ref->table == &employees);
  CHECK_FALSE(c.FindTable("other", "employees").has_value());
  REQUIRE(employees.FindColumn("age") != nullptr);
  CHECK(employees.FindColumn("age")->upper == 100.0);
  CHECK(employees.FindColumn("nope") == nullptr);
}

TEST_CASE("defaults apply when optional keys are missing", "[config]") {
  const Config c = Accept(R"(upstream: { dsn: "dbname=w" }
ledger: { dsn: "dbname=l" }
analysts:
  - name: bob
    scram: ")" + kVerifier +
                          R"("
    budget: { epsilon: 1 }
datasets:
  - name: d
    budget: { epsilon: 3 }
    tables:
      - name: t
        privacy_unit: uid
)");
  CHECK(c.listen.host == "127.0.0.1");
  CHECK(c.listen.port == 6543);
  CHECK_FALSE(c.tls.has_value());
  CHECK(c.upstream.pool_size == 16);
  CHECK(c.upstream.pool_mode == dpgate::config::PoolMode::kSession);
  CHECK(c.ledger.schema == "dp_ledger");
  CHECK(c.auth == AuthMode::kScram);
  CHECK(c.analysts[0].budget.delta == 0.0);
  CHECK(c.analysts[0].budget.period == Period::kMonth);
  CHECK(c.query.epsilon == 0.5);
  CHECK(c.query.delta == 1e-7);
  CHECK(c.query.max_epsilon == 2.0);
  CHECK(c.query.mechanism == Mechanism::kLaplace);
  CHECK(c.query.cache_ttl == std::chrono::seconds(3600));
  CHECK(c.limits.max_connections == 1000);
  CHECK(c.limits.max_message_size == 4u << 20);
  CHECK(c.limits.auth_timeout == std::chrono::seconds(30));
  CHECK(c.limits.idle_timeout == std::chrono::seconds(0));
  const TableSpec& t = c.datasets[0].tables[0];
  CHECK(t.qualified_name() == "public.t");
  CHECK(t.max_groups_contributed == 1);
  CHECK(t.max_rows_per_group == 1);
  CHECK(t.columns.empty());
}

TEST_CASE("environment variables are substituted in DSNs", "[config]") {
  ::setenv("DPGATE_CONFIG_TEST_PW", "s3cr3t", 1);
  ::setenv("DPGATE_CONFIG_TEST_HOST", "db.internal", 1);
  const Config c = Accept(Mutate(
      R"("host=127.0.0.1 dbname=w user=reader")",
      R"("host=${DPGATE_CONFIG_TEST_HOST} dbname=w user=reader password=${DPGATE_CONFIG_TEST_PW}")"));
  CHECK(c.upstream.dsn == "host=db.internal dbname=w user=reader password=s3cr3t");
  // a lone $ is left alone
  const Config c2 = Accept(Mutate("user=ledger\"", "user=ledger password=pa$$word\""));
  CHECK(c2.ledger.dsn == "host=127.0.0.1 dbname=w user=ledger password=pa$$word");
  ::unsetenv("DPGATE_CONFIG_TEST_PW");
  ::unsetenv("DPGATE_CONFIG_TEST_HOST");
}

TEST_CASE("table names resolve like PostgreSQL identifiers", "[config]") {
  auto table = [](const std::string& written) {
    const Config c = Accept(Mutate("- name: employees", "- name: '" + written + "'"));
    return std::pair{c.datasets[0].tables[0].schema, c.datasets[0].tables[0].name};
  };
  CHECK(table("employees") == std::pair<std::string, std::string>{"public", "employees"});
  CHECK(table("HR.Employees") == std::pair<std::string, std::string>{"hr", "employees"});
  CHECK(table("\"HR\".\"Emp.Data\"") == std::pair<std::string, std::string>{"HR", "Emp.Data"});
}

TEST_CASE("cache_ttl forms", "[config]") {
  auto ttl = [](const std::string& written) {
    return Accept(kMinimal + "query: { cache_ttl: " + written + " }\n").query.cache_ttl.count();
  };
  CHECK(ttl("0") == 0);
  CHECK(ttl("90") == 90);
  CHECK(ttl("30s") == 30);
  CHECK(ttl("15m") == 900);
  CHECK(ttl("1h") == 3600);
  CHECK(ttl("1d") == 86400);
}

TEST_CASE("limits are read with their units", "[config]") {
  const Config c = Accept(kMinimal +
                          "limits:\n  max_connections: 50\n  max_message_size: 65536\n"
                          "  auth_timeout: 2m\n  idle_timeout: 15m\n");
  CHECK(c.limits.max_connections == 50);
  CHECK(c.limits.max_message_size == 65536);
  CHECK(c.limits.auth_timeout == std::chrono::seconds(120));
  CHECK(c.limits.idle_timeout == std::chrono::seconds(900));
  CHECK(Accept(kMinimal + "limits: { idle_timeout: 0 }\n").limits.idle_timeout.count() == 0);
}

TEST_CASE("loopback listen hosts allow trust, others need scram and tls", "[config]") {
  for (const std::string host : {"127.0.0.1", "127.1.2.3", "::1", "localhost"}) {
    CHECK(Accept(kMinimal + "listen: { host: '" + host + "' }\n").listen.host == host);
  }
  TempDir dir;
  dir.Write("c.pem", "cert");
  dir.Write("k.pem", "key");
  auto yaml = Mutate("auth: trust", "auth: scram");
  yaml = Mutate("  - name: alice\n", "  - name: alice\n    scram: \"" + kVerifier + "\"\n", yaml);
  yaml += "listen: { host: 0.0.0.0, port: 5433 }\ntls: { cert: c.pem, key: k.pem }\n";
  const Config c = Accept(yaml, (dir.path / "dpgate.yaml").string());
  CHECK(c.listen.host == "0.0.0.0");
  CHECK(c.listen.port == 5433);
  REQUIRE(c.tls.has_value());
  CHECK(c.tls->cert == (dir.path / "c.pem").string());
}

TEST_CASE("gaussian, zero-delta budgets and numeric values parse", "[config]") {
  const Config c = Accept(Mutate("delta: 1.0e-6", "delta: 0") +
                          "          age: {}\n"
                          "          grade: { values: [1, 2, 3] }\n"
                          "query: { mechanism: gaussian, delta: 1.0e-8, epsilon: 2, "
                          "max_epsilon: 2 }\n");
  CHECK(c.analysts[0].budget.delta == 0.0);
  CHECK(c.query.mechanism == Mechanism::kGaussian);
  CHECK(c.query.delta == 1.0e-8);
  const TableSpec& t = c.datasets[0].tables[0];
  REQUIRE(t.FindColumn("age") != nullptr);
  CHECK_FALSE(t.FindColumn("age")->has_bounds());
  CHECK(t.FindColumn("grade")->values == std::vector<std::string>{"1", "2", "3"});
}

TEST_CASE("ToString names", "[config]") {
  CHECK(std::string(ToString(AuthMode::kScram)) == "scram");
  CHECK(std::string(ToString(AuthMode::kTrust)) == "trust");
  CHECK(std::string(ToString(Period::kDay)) == "day");
  CHECK(std::string(ToString(Period::kWeek)) == "week");
  CHECK(std::string(ToString(Period::kMonth)) == "month");
  CHECK(std::string(ToString(Period::kNever)) == "never");
  CHECK(std::string(ToString(Mechanism::kLaplace)) == "laplace");
  CHECK(std::string(ToString(Mechanism::kGaussian)) == "gaussian");
}

}  // namespace
}  // namespace dpgate::config::testing
