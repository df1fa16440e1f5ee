// `dpgate ledger status | grant | report | verify` against a real ledger,
// reached with --ledger-dsn (the config loader is exercised elsewhere).
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "dpgate/accountant/period.h"
#include "ledger_fixture.h"

using namespace ledger_test;

namespace {

std::string Dpgate(const LedgerDb& l, const std::string& args, int* status) {
  std::string out;
  *status = dpgate::testing::RunCommand(
      std::string(DPGATE_BINARY) + " ledger " + args + " --ledger-dsn '" + l.dsn + "'", &out);
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

LedgerDb LedgerWithSomeSpend() {
  LedgerDb l = NewLedgerDb("ledger_cli");
  dpgate::config::Config cfg;
  cfg.analysts.push_back(MakeAnalyst("alice", 1.0, 1e-5, Period::kMonth));
  cfg.analysts.push_back(MakeAnalyst("bob", 5.0, 1e-5, Period::kMonth));
  cfg.datasets.push_back(MakeDataset("hr", 100, 1e-3, Period::kMonth));
  auto ledger = OpenLedger(l);
  REQUIRE_OK(ledger->SyncBudgets(cfg));
  for (double eps : {0.25, 0.5, 0.125}) REQUIRE_OK(ledger->Charge(Req("alice", "hr", eps, 1e-7)));
  REQUIRE_FALSE(ledger->Charge(Req("alice", "hr", 0.5)).ok());  // 0.125 left: refused
  REQUIRE_OK(ledger->Charge(Req("bob", "hr", 1.0)));
  return l;
}

}  // namespace

TEST_CASE("ledger status shows spent and remaining budget per period") {
  const LedgerDb l = LedgerWithSomeSpend();
  int status = 0;
  const std::string out = Dpgate(l, "status --analyst alice", &status);
  INFO(out);
  CHECK(status == 0);
  CHECK(out.find("analyst alice") != std::string::npos);
  CHECK(out.find("(global)") != std::string::npos);
  CHECK(out.find("analyst bob") == std::string::npos);
  CHECK(out.find("0.875") != std::string::npos);  // spent ε
  CHECK(out.find("0.125") != std::string::npos);  // left ε
  CHECK(out.find(l.pg.password) == std::string::npos);
}

TEST_CASE("ledger grant adds budget that the next charge can use") {
  const LedgerDb l = LedgerWithSomeSpend();
  int status = 0;
  std::string out =
      Dpgate(l, "grant --analyst alice --dataset hr --epsilon 2 --note 'project X'", &status);
  INFO(out);
  CHECK(status == 0);
  auto ledger = OpenLedger(l);
  auto charged = ledger->Charge(Req("alice", "hr", 1.5));
  REQUIRE_OK(charged);
  CHECK(charged->analyst.granted_epsilon == Approx(3.0));
  CHECK(Scalar(l, "SELECT note FROM dp_ledger.budgets WHERE source = 'grant'") == "project X");

  out = Dpgate(l, "grant --global --dataset hr --epsilon 5", &status);
  CHECK(status == 0);
  CHECK(Scalar(l,
               "SELECT count(*) FROM dp_ledger.budgets WHERE source = 'grant' AND "
               "principal_kind = 'dataset'") == "1");
  out = Dpgate(l, "grant --analyst mallory --dataset hr --epsilon 5", &status);
  CHECK(status == 1);
  CHECK(out.find("no budget for analyst mallory") != std::string::npos);
  out = Dpgate(l, "grant --analyst alice --dataset hr", &status);
  CHECK(status == 2);
  CHECK(out.find("--epsilon") != std::string::npos);
}

TEST_CASE("ledger report writes json, csv and self-contained html") {
  const LedgerDb l = LedgerWithSomeSpend();
  const std::string since =
      dpgate::accountant::FormatIso8601(std::chrono::system_clock::now() - std::chrono::hours(24))
          .substr(0, 10);
  const std::string dir = "/tmp/" + l.db;
  REQUIRE(dpgate::testing::RunCommand("mkdir -p " + dir, nullptr) == 0);
  int status = 0;

  std::string out =
      Dpgate(l, "report --since " + since + " --format json -o " + dir + "/r.json", &status);
  INFO(out);
  REQUIRE(status == 0);
  const std::string json = ReadFile(dir + "/r.json");
  CHECK(json.find("\"analyst\":\"alice\",\"dataset\":\"hr\",\"queries\":3,\"refusals\":1,"
                  "\"epsilon\":0.875") != std::string::npos);
  CHECK(json.find("\"analyst\":\"bob\",\"dataset\":\"hr\",\"queries\":1,\"refusals\":0") !=
        std::string::npos);
  // The largest charge comes first, and the budget line is alice's 1.0.
  CHECK(json.find("\"largest\":[{\"id\":2,") != std::string::npos);
  CHECK(json.find("\"period_cumulative_epsilon\":0.875,\"budget_epsilon\":1}") !=
        std::string::npos);

  out = Dpgate(l, "report --since " + since + " --format csv", &status);
  REQUIRE(status == 0);
  CHECK(out.rfind(
            "record,analyst,dataset,date,charge_id,queries,refusals,epsilon,delta,fingerprint\n",
            0) == 0);
  CHECK(out.find("total,alice,hr,,,3,1,0.875,") != std::string::npos);
  CHECK(out.find("largest,alice,hr,") != std::string::npos);

  out = Dpgate(l, "report --since " + since + " --format html -o " + dir + "/r.html", &status);
  REQUIRE(status == 0);
  const std::string html = ReadFile(dir + "/r.html");
  CHECK(html.find("<svg") != std::string::npos);
  CHECK(html.find("<polyline") != std::string::npos);
  CHECK(html.find("alice on hr") != std::string::npos);
  // Self-contained: no scripts, stylesheets or images fetched from elsewhere.
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("url(") == std::string::npos);

  // A range with nothing in it.
  out = Dpgate(l, "report --since 2001-01-01 --until 2001-01-31 --format json", &status);
  CHECK(status == 0);
  CHECK(out.find("\"principals\":[]") != std::string::npos);
  out = Dpgate(l, "report --since 2001-01-01", &status);
  CHECK(status == 2);
  (void)dpgate::testing::RunCommand("rm -rf " + dir, nullptr);
}

TEST_CASE("ledger commands fail clearly without a ledger or with a bad config") {
  int status = 0;
  std::string out;
  status = dpgate::testing::RunCommand(std::string(DPGATE_BINARY) + " ledger verify", &out);
  CHECK(status == 2);
  CHECK(out.find("--ledger-dsn") != std::string::npos);
  status = dpgate::testing::RunCommand(
      std::string(DPGATE_BINARY) + " ledger status -c /nonexistent/dpgate.yaml", &out);
  CHECK(status == 2);
  status = dpgate::testing::RunCommand(
      std::string(DPGATE_BINARY) + " ledger frobnicate --ledger-dsn x", &out);
  CHECK(status == 2);
  CHECK(out.find("unknown command") != std::string::npos);
}
