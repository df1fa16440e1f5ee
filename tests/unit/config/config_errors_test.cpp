// Bad configs: each must be refused with a message naming the file, the line
// and the field path at fault, and what is expected.
#include <cstdlib>

#include "config_test_util.h"

namespace dpgate::config::testing {
namespace {

using Catch::Matchers::Contains;

TEST_CASE("the minimal fixture itself is valid", "[config]") {
  Accept(kMinimal);
}

TEST_CASE("YAML syntax error names the line", "[config]") {
  // The flow mapping opened on line 6 is found unclosed on line 7.
  CHECK_THAT(ErrorOf(Mutate("period: month }", "period: month")),
             Contains("dpgate.yaml:7: YAML syntax error: end of map flow not found"));
  CHECK_THAT(ErrorOf(Mutate("auth: trust", "auth: trust: scram")),
             Contains("dpgate.yaml:3: YAML syntax error: illegal map value"));
}

TEST_CASE("empty file is refused", "[config]") {
  CHECK_THAT(ErrorOf(""), Contains("dpgate.yaml:1: the config is empty"));
  CHECK_THAT(ErrorOf("# only a comment\n"), Contains("the config is empty"));
}

TEST_CASE("top level must be a mapping", "[config]") {
  CHECK_THAT(ErrorOf("- a\n- b\n"), Contains("dpgate.yaml:1: expected a mapping with keys listen"));
}

TEST_CASE("unknown top-level key suggests the closest", "[config]") {
  const auto msg = ErrorOf(kMinimal + "listne: { host: 127.0.0.1 }\n");
  CHECK_THAT(msg, Contains("dpgate.yaml:15: listne: unknown key 'listne'; did you mean 'listen'?"));
  CHECK_THAT(msg, Contains("allowed keys: listen, tls, upstream"));
}

TEST_CASE("unknown nested key names its full path", "[config]") {
  const auto msg = ErrorOf(Mutate("privacy_unit: employee_id", "privacy_unti: employee_id"));
  CHECK_THAT(msg, Contains("dpgate.yaml:12: datasets[0].tables[0].privacy_unti: unknown key "
                           "'privacy_unti'; did you mean 'privacy_unit'?"));
  // and the real key is then missing
  CHECK_THAT(msg, Contains("dpgate.yaml:11: datasets[0].tables[0]: missing required key "
                           "'privacy_unit'"));
}

TEST_CASE("unknown key without a close match lists the allowed keys", "[config]") {
  const auto msg = ErrorOf(Mutate("epsilon: 50,", "epsilon: 50, colour: blue,"));
  CHECK_THAT(msg, Contains("dpgate.yaml:9: datasets[0].budget.colour: unknown key 'colour' "
                           "(allowed keys: epsilon, delta, period)"));
}

TEST_CASE("number expected, got a word", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("epsilon: 10,", "epsilon: ten,")),
             Contains("dpgate.yaml:6: analysts[0].budget.epsilon: expected a number, got 'ten'"));
}

TEST_CASE("number expected, got a quoted string", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("epsilon: 10,", "epsilon: \"10\",")),
             Contains("dpgate.yaml:6: analysts[0].budget.epsilon: expected a number, got the "
                      "string \"10\" (numbers are written without quotes)"));
}

TEST_CASE("list expected, got a scalar", "[config]") {
  const auto yaml = Mutate("analysts:\n  - name: alice\n", "analysts: alice\n\n");
  const auto yaml2 =
      Mutate("    budget: { epsilon: 10, delta: 1.0e-6, period: month }\n", "\n", yaml);
  CHECK_THAT(ErrorOf(yaml2), Contains("dpgate.yaml:4: analysts: expected a list, got 'alice'"));
}

TEST_CASE("mapping expected, got a list", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("budget: { epsilon: 50, delta: 1.0e-5 }", "budget: [50]")),
             Contains("dpgate.yaml:9: datasets[0].budget: expected a mapping with keys epsilon, "
                      "delta, period, got a list"));
}

TEST_CASE("missing upstream.dsn", "[config]") {
  CHECK_THAT(ErrorOf(Mutate(R"(upstream: { dsn: "host=127.0.0.1 dbname=w user=reader" })",
                            "upstream: { pool_size: 4 }")),
             Contains("dpgate.yaml:1: upstream: missing required key 'dsn'"));
}

TEST_CASE("missing ledger.dsn", "[config]") {
  CHECK_THAT(ErrorOf(Mutate(R"(ledger: { dsn: "host=127.0.0.1 dbname=w user=ledger" })",
                            "ledger: { schema: dp_ledger }")),
             Contains("dpgate.yaml:2: ledger: missing required key 'dsn'"));
}

TEST_CASE("missing ledger section", "[config]") {
  CHECK_THAT(ErrorOf(Mutate(R"(ledger: { dsn: "host=127.0.0.1 dbname=w user=ledger" })", "")),
             Contains("dpgate.yaml:1: missing required key 'ledger'"));
}

TEST_CASE("missing datasets", "[config]") {
  const auto yaml = kMinimal.substr(0, kMinimal.find("datasets:"));
  CHECK_THAT(ErrorOf(yaml), Contains("dpgate.yaml:1: missing required key 'datasets'"));
}

TEST_CASE("missing table name", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("- name: employees", "- public: false")),
             Contains("dpgate.yaml:11: datasets[0].tables[0]: missing required key 'name'"));
}

TEST_CASE("private table without privacy_unit", "[config]") {
  const auto msg = ErrorOf(Mutate("privacy_unit: employee_id", "max_rows_per_group: 2"));
  CHECK_THAT(msg, Contains("dpgate.yaml:11: datasets[0].tables[0]: missing required key "
                           "'privacy_unit'"));
  CHECK_THAT(msg, Contains("public: true"));
}

TEST_CASE("epsilon zero or negative", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("epsilon: 10,", "epsilon: 0,")),
             Contains("dpgate.yaml:6: analysts[0].budget.epsilon: epsilon must be greater than 0, "
                      "got 0"));
  CHECK_THAT(ErrorOf(Mutate("epsilon: 50,", "epsilon: -1,")),
             Contains("dpgate.yaml:9: datasets[0].budget.epsilon: epsilon must be greater than 0, "
                      "got -1"));
}

TEST_CASE("epsilon NaN or infinite", "[config]") {
  CHECK_THAT(
      ErrorOf(Mutate("epsilon: 10,", "epsilon: .nan,")),
      Contains("dpgate.yaml:6: analysts[0].budget.epsilon: expected a finite number, got .nan"));
  CHECK_THAT(
      ErrorOf(Mutate("epsilon: 50,", "epsilon: .inf,")),
      Contains("dpgate.yaml:9: datasets[0].budget.epsilon: expected a finite number, got .inf"));
}

TEST_CASE("delta below 0 or not below 1", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("delta: 1.0e-6", "delta: 1")),
             Contains("dpgate.yaml:6: analysts[0].budget.delta: delta must be at least 0 and less "
                      "than 1, got 1"));
  CHECK_THAT(ErrorOf(Mutate("delta: 1.0e-5", "delta: -1.0e-5")),
             Contains("dpgate.yaml:9: datasets[0].budget.delta: delta must be at least 0 and less "
                      "than 1, got -1.0e-5"));
}

TEST_CASE("lower greater than upper", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("{ lower: 0, upper: 500000 }", "{ lower: 500, upper: 0 }")),
             Contains("dpgate.yaml:14: datasets[0].tables[0].columns.salary: lower (500) is "
                      "greater than upper (0); expected lower <= upper"));
}

TEST_CASE("only one bound given", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("{ lower: 0, upper: 500000 }", "{ upper: 500000 }")),
             Contains("dpgate.yaml:14: datasets[0].tables[0].columns.salary: only upper is given; "
                      "expected both lower and upper"));
}

TEST_CASE("bound is not a number", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("upper: 500000", "upper: lots")),
             Contains("dpgate.yaml:14: datasets[0].tables[0].columns.salary.upper: expected a "
                      "number, got 'lots'"));
}

TEST_CASE("values empty", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "          region: { values: [] }\n"),
             Contains("dpgate.yaml:15: datasets[0].tables[0].columns.region.values: expected at "
                      "least one value"));
}

TEST_CASE("values with a duplicate", "[config]") {
  const auto yaml = kMinimal +
                    "          region:\n"
                    "            values:\n"
                    "              - north\n"
                    "              - south\n"
                    "              - north\n";
  CHECK_THAT(ErrorOf(yaml), Contains("dpgate.yaml:19: datasets[0].tables[0].columns.region."
                                     "values[2]: duplicate value 'north' (already listed at line "
                                     "17)"));
}

TEST_CASE("values and bounds on one column", "[config]") {
  CHECK_THAT(
      ErrorOf(Mutate("{ lower: 0, upper: 500000 }", "{ lower: 0, upper: 9, values: [1, 2] }")),
      Contains("dpgate.yaml:14: datasets[0].tables[0].columns.salary: has both bounds and "
               "values"));
}

TEST_CASE("duplicate analyst names", "[config]") {
  const auto yaml = Mutate("    budget: { epsilon: 10, delta: 1.0e-6, period: month }\n",
                           "    budget: { epsilon: 10, delta: 1.0e-6, period: month }\n"
                           "  - name: alice\n"
                           "    budget: { epsilon: 1 }\n");
  CHECK_THAT(ErrorOf(yaml), Contains("dpgate.yaml:7: analysts[1].name: duplicate analyst 'alice' "
                                     "(first defined at line 5)"));
}

TEST_CASE("duplicate dataset names and a table in two datasets", "[config]") {
  const auto yaml = kMinimal +
                    "  - name: hr\n"
                    "    budget: { epsilon: 5 }\n"
                    "    tables:\n"
                    "      - name: public.employees\n"
                    "        privacy_unit: employee_id\n";
  const auto msg = ErrorOf(yaml);
  CHECK_THAT(msg, Contains("dpgate.yaml:15: datasets[1].name: duplicate dataset 'hr' (first "
                           "defined at line 8)"));
  CHECK_THAT(msg, Contains("dpgate.yaml:18: datasets[1].tables[0]: table public.employees is "
                           "already configured in dataset 'hr' at line 11"));
}

TEST_CASE("duplicate column, after case folding", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "          Salary: { lower: 0, upper: 1 }\n"),
             Contains("dpgate.yaml:15: datasets[0].tables[0].columns.Salary: duplicate column "
                      "'salary' (first given at line 14)"));
}

TEST_CASE("duplicate key in a mapping", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("auth: trust\n", "auth: trust\nauth: scram\n")),
             Contains("dpgate.yaml:4: auth: duplicate key (first given at line 3)"));
}

TEST_CASE("public table with privacy settings is a contradiction", "[config]") {
  const auto yaml = kMinimal +
                    "      - name: public.regions\n"
                    "        public: true\n"
                    "        privacy_unit: region_id\n";
  CHECK_THAT(ErrorOf(yaml), Contains("dpgate.yaml:17: datasets[0].tables[1].privacy_unit: a "
                                     "public table takes no privacy_unit"));
}

TEST_CASE("public must be a boolean", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "      - name: regions\n        public: maybe\n"),
             Contains("dpgate.yaml:16: datasets[0].tables[1].public: expected true or false, got "
                      "'maybe'"));
}

TEST_CASE("max_groups_contributed and max_rows_per_group must be whole numbers >= 1", "[config]") {
  CHECK_THAT(
      ErrorOf(Mutate("privacy_unit: employee_id\n",
                     "privacy_unit: employee_id\n        max_groups_contributed: 0\n")),
      Contains("dpgate.yaml:13: datasets[0].tables[0].max_groups_contributed: must be between 1 "
               "and 1000000, got 0"));
  CHECK_THAT(
      ErrorOf(Mutate("privacy_unit: employee_id\n",
                     "privacy_unit: employee_id\n        max_rows_per_group: 2.5\n")),
      Contains("dpgate.yaml:13: datasets[0].tables[0].max_rows_per_group: expected a whole number "
               "between 1 and 1000000, got 2.5"));
}

TEST_CASE("period must be day, week, month or never", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("period: month", "period: monthly")),
             Contains("dpgate.yaml:6: analysts[0].budget.period: expected one of day, week, "
                      "month, never, got 'monthly'; did you mean 'month'?"));
}

TEST_CASE("mechanism must be laplace or gaussian", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "query: { mechanism: gauss, delta: 1.0e-7 }\n"),
             Contains("dpgate.yaml:15: query.mechanism: expected one of laplace, gaussian, got "
                      "'gauss'; did you mean 'gaussian'?"));
}

TEST_CASE("gaussian needs query.delta > 0", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "query:\n  mechanism: gaussian\n  delta: 0\n"),
             Contains("dpgate.yaml:17: query.delta: the Gaussian mechanism needs delta > 0"));
}

TEST_CASE("query.epsilon above max_epsilon", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "query:\n  epsilon: 3\n  max_epsilon: 2\n"),
             Contains("dpgate.yaml:16: query.epsilon: the default epsilon (3) is greater than "
                      "max_epsilon (2); expected epsilon <= max_epsilon"));
  // max_epsilon's default (2.0) applies when only epsilon is given
  CHECK_THAT(ErrorOf(kMinimal + "query: { epsilon: 2.5 }\n"),
             Contains("dpgate.yaml:15: query.epsilon: the default epsilon (2.5) is greater than "
                      "max_epsilon (2)"));
}

TEST_CASE("cache_ttl must be a duration", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "query: { cache_ttl: 10x }\n"),
             Contains("dpgate.yaml:15: query.cache_ttl: '10x' is not a duration; expected a "
                      "duration such as 0, 30s, 15m, 1h, 1d"));
  CHECK_THAT(ErrorOf(kMinimal + "query: { cache_ttl: -5 }\n"),
             Contains("dpgate.yaml:15: query.cache_ttl: '-5' is not a duration"));
  CHECK_THAT(ErrorOf(kMinimal + "query: { cache_ttl: 400d }\n"),
             Contains("dpgate.yaml:15: query.cache_ttl: '400d' is too long; at most 365d"));
}

TEST_CASE("limits: ranges, durations and unknown keys", "[config]") {
  CHECK_THAT(
      ErrorOf(kMinimal + "limits: { max_connections: 0 }\n"),
      Contains("dpgate.yaml:15: limits.max_connections: must be between 1 and 100000, got 0"));
  CHECK_THAT(ErrorOf(kMinimal + "limits: { max_message_size: 100 }\n"),
             Contains("dpgate.yaml:15: limits.max_message_size: must be between 1024 and "
                      "1073741824, got 100"));
  CHECK_THAT(ErrorOf(kMinimal + "limits: { auth_timeout: 0 }\n"),
             Contains("dpgate.yaml:15: limits.auth_timeout: expected a duration from 1s to 10m, "
                      "got 0; authentication must end"));
  CHECK_THAT(ErrorOf(kMinimal + "limits: { auth_timeout: 1h }\n"),
             Contains("limits.auth_timeout: expected a duration from 1s to 10m, got 1h"));
  CHECK_THAT(ErrorOf(kMinimal + "limits: { idle_timeout: soon }\n"),
             Contains("dpgate.yaml:15: limits.idle_timeout: 'soon' is not a duration"));
  CHECK_THAT(ErrorOf(kMinimal + "limits: { idle_timout: 5m }\n"), Contains("limits"));
  CHECK_THAT(ErrorOf(kMinimal + "limits: { idle_timout: 5m }\n"), Contains("idle_timeout"));
}

TEST_CASE("pool_size range", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("user=reader\" }", "user=reader\", pool_size: 0 }")),
             Contains("dpgate.yaml:1: upstream.pool_size: must be between 1 and 1024, got 0"));
  CHECK_THAT(ErrorOf(Mutate("user=reader\" }", "user=reader\", pool_size: 5000 }")),
             Contains("dpgate.yaml:1: upstream.pool_size: must be between 1 and 1024, got 5000"));
}

TEST_CASE("pool_mode is session or transaction", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("user=reader\" }", "user=reader\", pool_mode: statement }")),
             Contains("dpgate.yaml:1: upstream.pool_mode:"));
  CHECK_THAT(ErrorOf(Mutate("user=reader\" }", "user=reader\", pool_mode: statement }")),
             Contains("transaction"));
}

TEST_CASE("port range", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "listen: { host: 127.0.0.1, port: 70000 }\n"),
             Contains("dpgate.yaml:15: listen.port: must be between 1 and 65535, got 70000"));
}

TEST_CASE("auth trust with a non-loopback listen host", "[config]") {
  const auto msg = ErrorOf(kMinimal + "listen: { host: 0.0.0.0 }\n");
  CHECK_THAT(msg, Contains("dpgate.yaml:3: auth: trust is only allowed when listen.host is "
                           "a loopback address (127.0.0.0/8, ::1 or localhost), but listen.host "
                           "is 0.0.0.0"));
  CHECK_THAT(msg, Contains("dpgate.yaml:15: listen.host: tls is required for non-local listen"));
}

TEST_CASE("auth must be scram or trust", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("auth: trust", "auth: md5")),
             Contains("dpgate.yaml:3: auth: expected one of scram, trust, got 'md5'"));
}

TEST_CASE("auth scram with an analyst missing scram", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("auth: trust", "auth: scram")),
             Contains("dpgate.yaml:5: analysts[0]: missing required key 'scram': auth is scram, so "
                      "every analyst needs a SCRAM-SHA-256 verifier; generate one with `dpgate "
                      "passwd alice`"));
}

TEST_CASE("malformed SCRAM verifiers", "[config]") {
  auto with_scram = [](const std::string& verifier) {
    return Mutate("  - name: alice\n", "  - name: alice\n    scram: \"" + verifier + "\"\n");
  };
  CHECK_THAT(ErrorOf(with_scram("md5abcdef")),
             Contains("dpgate.yaml:6: analysts[0].scram: the verifier does not start with "
                      "SCRAM-SHA-256$"));
  // StoredKey of 16 bytes instead of 32
  const std::string short_key =
      "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$ypeBEsobvcr6wjGzmiPcTQ==:"
      "PiPoFgA5WUoziU9lZOGxNIu9egCI1CxKy3PurtWcAJ0=";
  const auto msg = ErrorOf(with_scram(short_key));
  CHECK_THAT(msg, Contains("dpgate.yaml:6: analysts[0].scram: the verifier's StoredKey is not "
                           "base64 of 32 bytes"));
  CHECK_THAT(msg, !Contains("ypeBEsob"));  // the verifier is never echoed
  CHECK_THAT(ErrorOf(with_scram("SCRAM-SHA-256$4096:not*base64$" + kVerifier.substr(45))),
             Contains("analysts[0].scram: the verifier's salt is not valid base64"));
  CHECK_THAT(
      ErrorOf(with_scram("SCRAM-SHA-256$0:MDEyMzQ1Njc4OWFiY2RlZg==$" + kVerifier.substr(45))),
      Contains("analysts[0].scram: the verifier's iteration count is not a positive integer"));
}

TEST_CASE("non-loopback listen without tls", "[config]") {
  auto yaml = Mutate("auth: trust", "auth: scram");
  yaml = Mutate("  - name: alice\n", "  - name: alice\n    scram: \"" + kVerifier + "\"\n", yaml);
  CHECK_THAT(ErrorOf(yaml + "listen:\n  host: 10.1.2.3\n"),
             Contains("dpgate.yaml:16: listen.host: tls is required for non-local listen (host "
                      "10.1.2.3)"));
}

TEST_CASE("tls files that do not exist", "[config]") {
  const auto msg = ErrorOf(kMinimal + "tls:\n  cert: no-such-cert.pem\n  key: /no/such/key.pem\n");
  CHECK_THAT(msg, Contains("dpgate.yaml:16: tls.cert: cannot read no-such-cert.pem: No such file"));
  CHECK_THAT(msg, Contains("dpgate.yaml:17: tls.key: cannot read /no/such/key.pem"));
}

TEST_CASE("tls without a key", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "tls: { cert: server.crt }\n"),
             Contains("dpgate.yaml:15: tls: missing required key 'key'"));
}

TEST_CASE("analysts empty", "[config]") {
  const auto yaml = Mutate(
      "analysts:\n  - name: alice\n    budget: { epsilon: 10, delta: 1.0e-6, "
      "period: month }\n",
      "analysts: []\n\n\n");
  CHECK_THAT(ErrorOf(yaml), Contains("dpgate.yaml:4: analysts: expected at least one analyst"));
}

TEST_CASE("table names: three parts and bad identifiers", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("- name: employees", "- name: warehouse.public.employees")),
             Contains("dpgate.yaml:11: datasets[0].tables[0].name: 'warehouse.public.employees' "
                      "has more than two parts; expected table or schema.table"));
  CHECK_THAT(ErrorOf(Mutate("- name: employees", "- name: emp-loyees")),
             Contains("dpgate.yaml:11: datasets[0].tables[0].name: 'emp-loyees' is not an SQL "
                      "identifier"));
  CHECK_THAT(ErrorOf(Mutate("- name: employees", "- name: public.")),
             Contains("dpgate.yaml:11: datasets[0].tables[0].name: empty identifier"));
}

TEST_CASE("bad column and privacy_unit identifiers", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("privacy_unit: employee_id", "privacy_unit: 1st")),
             Contains("dpgate.yaml:12: datasets[0].tables[0].privacy_unit: '1st' is not an SQL "
                      "identifier"));
  CHECK_THAT(ErrorOf(Mutate("salary:", "sal ary:")),
             Contains("dpgate.yaml:14: datasets[0].tables[0].columns.sal ary: 'sal ary' is not an "
                      "SQL identifier"));
}

TEST_CASE("ledger.schema must be a plain identifier", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("user=ledger\" }", "user=ledger\", schema: Dp-Ledger }")),
             Contains("dpgate.yaml:2: ledger.schema: 'Dp-Ledger' is not a plain schema name"));
}

TEST_CASE("unset environment variable in a DSN", "[config]") {
  ::unsetenv("DPGATE_CONFIG_TEST_UNSET_VAR");
  CHECK_THAT(
      ErrorOf(Mutate("user=reader\"", "user=reader password=${DPGATE_CONFIG_TEST_UNSET_VAR}\"")),
      Contains("dpgate.yaml:1: upstream.dsn: environment variable "
               "DPGATE_CONFIG_TEST_UNSET_VAR (referenced as "
               "${DPGATE_CONFIG_TEST_UNSET_VAR}) is not set"));
  CHECK_THAT(ErrorOf(Mutate("user=ledger\"", "user=ledger password=${OOPS\"")),
             Contains("dpgate.yaml:2: ledger.dsn: '${' without a closing '}'"));
}

TEST_CASE("DSN that libpq cannot parse", "[config]") {
  CHECK_THAT(ErrorOf(Mutate("user=reader\"", "usr=reader\"")),
             Contains("dpgate.yaml:1: upstream.dsn: unknown connection option 'usr'"));
  // A parse error may quote part of the value: only a generic text is shown.
  const auto msg = ErrorOf(Mutate("user=reader\"", "user=reader password='hunter2\""));
  CHECK_THAT(msg, Contains("dpgate.yaml:1: upstream.dsn: not a valid libpq connection string"));
  CHECK_THAT(msg, !Contains("hunter2"));
  CHECK_THAT(ErrorOf(Mutate("\"host=127.0.0.1 dbname=w user=reader\"", "\"\"")),
             Contains("dpgate.yaml:1: upstream.dsn: expected a libpq connection string"));
}

TEST_CASE("several YAML documents", "[config]") {
  CHECK_THAT(ErrorOf(kMinimal + "---\nlisten: {}\n"),
             Contains("dpgate.yaml:16: the file holds several YAML documents"));
}

TEST_CASE("every error is reported, one per line, in line order", "[config]") {
  auto yaml = Mutate("epsilon: 10,", "epsilon: 0,");
  yaml = Mutate("{ lower: 0, upper: 500000 }", "{ lower: 9, upper: 1 }", yaml);
  const auto msg = ErrorOf(yaml);
  const auto first = msg.find("dpgate.yaml:6: analysts[0].budget.epsilon");
  const auto second = msg.find("\ndpgate.yaml:14: datasets[0].tables[0].columns.salary");
  REQUIRE(first == 0);
  REQUIRE(second != std::string::npos);
}

TEST_CASE("LoadConfig on a missing file names the file", "[config]") {
  auto result = LoadConfig("/nonexistent/dir/dpgate.yaml");
  REQUIRE_FALSE(result.ok());
  CHECK_THAT(result.error().message,
             Contains("/nonexistent/dir/dpgate.yaml: cannot read config: No such file"));
}

}  // namespace
}  // namespace dpgate::config::testing
