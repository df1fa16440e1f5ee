// dpgate ledger status | grant | report | verify (DESIGN.md §3, docs/LEDGER.md).
// Exit status: 0 success; 1 the ledger failed verification or an operation
// failed (unreachable ledger, unknown budget, ...); 2 usage or config error.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include "commands.h"
#include "dpgate/accountant/ledger.h"
#include "dpgate/accountant/report.h"
#include "dpgate/config/config.h"

namespace dpgate::app {

namespace {

namespace acct = dpgate::accountant;

constexpr char kUsage[] =
    "usage: dpgate ledger COMMAND (-c dpgate.yaml | --ledger-dsn DSN [--schema S]) [OPTIONS]\n"
    "\n"
    "  status [--analyst A] [--dataset D]   spent and remaining budget in the current period\n"
    "  grant --analyst A --dataset D --epsilon E [--delta D] [--note N]\n"
    "  grant --global --dataset D --epsilon E [--delta D] [--note N]\n"
    "                                       add budget to the current period\n"
    "  report --since YYYY-MM-DD [--until YYYY-MM-DD] --format json|csv|html [-o FILE]\n"
    "                                       compliance report (until is inclusive, UTC days)\n"
    "  verify                               recompute the hash chain; exit 1 naming the\n"
    "                                       first bad row\n"
    "\n"
    "With -c, budgets are first synced from the config (status, grant). --ledger-dsn\n"
    "reaches the ledger directly (schema dp_ledger unless --schema), without a config.\n";

int Usage(const std::string& problem) {
  if (!problem.empty()) std::fprintf(stderr, "dpgate ledger: %s\n\n", problem.c_str());
  std::fputs(kUsage, problem.empty() ? stdout : stderr);
  return problem.empty() ? 0 : 2;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "dpgate ledger: %s\n", what.c_str());
  return 1;
}

struct Parsed {
  std::string command;
  std::map<std::string, std::string> opts;  // "--analyst" -> "alice"; flags -> ""
};

bool IsFlag(const std::string& a) {
  return a == "--global";
}

std::optional<Parsed> Parse(const Args& args, std::string* problem) {
  Parsed p;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      p.command = "help";
      return p;
    }
    if (!a.empty() && a[0] == '-') {
      if (IsFlag(a)) {
        p.opts[a] = "";
        continue;
      }
      if (i + 1 >= args.size()) {
        *problem = "option " + a + " needs a value";
        return std::nullopt;
      }
      p.opts[a == "-c" ? "--config" : a == "-o" ? "--output" : a] = args[++i];
    } else if (p.command.empty()) {
      p.command = a;
    } else {
      *problem = "unexpected argument '" + a + "'";
      return std::nullopt;
    }
  }
  return p;
}

std::optional<std::string> Opt(const Parsed& p, const std::string& name) {
  auto it = p.opts.find(name);
  if (it == p.opts.end()) return std::nullopt;
  return it->second;
}

bool ParseNumber(const std::string& s, double* out) {
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return !s.empty() && end != nullptr && *end == '\0';
}

int RunStatus(acct::Ledger& ledger, const Parsed& p) {
  auto budgets = ledger.Budgets({Opt(p, "--analyst"), Opt(p, "--dataset")});
  if (!budgets.ok()) return Fail(budgets.error().message);
  std::printf("%-16s %-24s %-18s %12s %12s %12s %12s %12s %12s %8s %8s\n", "dataset", "budget",
              "period", "granted ε", "spent ε", "left ε", "granted δ", "spent δ", "left δ",
              "queries", "refused");
  for (const auto& b : *budgets) {
    const std::string who =
        b.kind == acct::PrincipalKind::kDataset ? "(global)" : "analyst " + b.principal;
    std::printf("%-16s %-24s %-18s %12.6g %12.6g %12.6g %12.6g %12.6g %12.6g %8lld %8lld\n",
                b.dataset.c_str(), who.c_str(),
                (b.period_label + " (" + config::ToString(b.period) + ")").c_str(),
                b.granted_epsilon, b.spent_epsilon, b.remaining_epsilon(), b.granted_delta,
                b.spent_delta, b.remaining_delta(), static_cast<long long>(b.charges),
                static_cast<long long>(b.refusals));
  }
  if (budgets->empty()) std::printf("(no budgets match)\n");
  return 0;
}

int RunGrant(acct::Ledger& ledger, const Parsed& p) {
  acct::GrantRequest g;
  g.kind = Opt(p, "--global") ? acct::PrincipalKind::kDataset : acct::PrincipalKind::kAnalyst;
  const auto analyst = Opt(p, "--analyst");
  const auto dataset = Opt(p, "--dataset");
  const auto eps = Opt(p, "--epsilon");
  if (!dataset) return Usage("grant needs --dataset");
  if (g.kind == acct::PrincipalKind::kAnalyst && !analyst) {
    return Usage("grant needs --analyst (or --global for the dataset's global budget)");
  }
  if (g.kind == acct::PrincipalKind::kDataset && analyst) {
    return Usage("grant takes either --analyst or --global, not both");
  }
  if (!eps || !ParseNumber(*eps, &g.epsilon)) return Usage("grant needs --epsilon NUMBER");
  if (auto d = Opt(p, "--delta"); d && !ParseNumber(*d, &g.delta)) {
    return Usage("--delta needs a number");
  }
  g.analyst = analyst.value_or("");
  g.dataset = *dataset;
  g.note = Opt(p, "--note").value_or("");
  Status s = ledger.Grant(g);
  if (!s.ok()) return Fail(s.message());
  std::printf("granted ε=%g δ=%g to %s on dataset %s for the current period\n", g.epsilon, g.delta,
              g.kind == acct::PrincipalKind::kDataset ? "the global budget"
                                                      : ("analyst " + g.analyst).c_str(),
              g.dataset.c_str());
  return 0;
}

int RunReport(acct::Ledger& ledger, const Parsed& p) {
  const auto since_text = Opt(p, "--since");
  const auto format = Opt(p, "--format");
  if (!since_text) return Usage("report needs --since YYYY-MM-DD");
  if (!format || (*format != "json" && *format != "csv" && *format != "html")) {
    return Usage("report needs --format json|csv|html");
  }
  acct::TimePoint since, until = std::chrono::system_clock::now();
  if (!acct::ParseDate(*since_text, &since)) return Usage("--since: expected YYYY-MM-DD");
  if (auto u = Opt(p, "--until")) {
    if (!acct::ParseDate(*u, &until)) return Usage("--until: expected YYYY-MM-DD");
    until += std::chrono::days{1};  // the whole of that day
  }
  auto report = acct::BuildReport(ledger, since, until);
  if (!report.ok()) return Fail(report.error().message);
  const std::string text = *format == "json"  ? acct::RenderReportJson(*report)
                           : *format == "csv" ? acct::RenderReportCsv(*report)
                                              : acct::RenderReportHtml(*report);
  if (auto path = Opt(p, "--output")) {
    std::ofstream out(*path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return Fail("cannot write " + *path);
    std::fprintf(stderr, "wrote %s\n", path->c_str());
  } else {
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  return 0;
}

int RunVerify(acct::Ledger& ledger) {
  auto v = ledger.Verify();
  if (!v.ok()) return Fail(v.error().message);
  if (!v->ok) {
    if (v->first_bad_id) {
      std::printf("ledger verification FAILED at charge id %lld: %s\n",
                  static_cast<long long>(*v->first_bad_id), v->reason.c_str());
    } else {
      std::printf("ledger verification FAILED: %s\n", v->reason.c_str());
    }
    return 1;
  }
  std::printf("ledger OK: %lld charges verified, chain head %s\n",
              static_cast<long long>(v->rows_checked), v->head_hash_hex.c_str());
  return 0;
}

}  // namespace

int RunLedger(const Args& args) {
  std::string problem;
  const auto parsed = Parse(args, &problem);
  if (!parsed) return Usage(problem);
  const Parsed& p = *parsed;
  if (p.command.empty() || p.command == "help") return Usage(p.command.empty() ? "no command" : "");
  if (p.command != "status" && p.command != "grant" && p.command != "report" &&
      p.command != "verify") {
    return Usage("unknown command '" + p.command + "'");
  }
  acct::LedgerOptions options;
  std::optional<config::Config> cfg;
  if (auto path = Opt(p, "--config")) {
    auto loaded = config::LoadConfig(*path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "dpgate ledger: %s\n", loaded.error().message.c_str());
      return 2;
    }
    cfg = std::move(loaded).value();
    options.dsn = cfg->ledger.dsn;
    options.schema = cfg->ledger.schema;
  }
  if (auto dsn = Opt(p, "--ledger-dsn")) options.dsn = *dsn;
  if (auto schema = Opt(p, "--schema")) options.schema = *schema;
  if (options.dsn.empty()) return Usage("give -c dpgate.yaml or --ledger-dsn DSN");
  // Only a command given the config (which it syncs) creates or migrates the
  // schema: verify and report only read, and a mistyped --schema must be an
  // error, not a new empty ledger.
  options.migrate = cfg.has_value() && (p.command == "status" || p.command == "grant");
  auto opened = acct::Ledger::Open(options);
  if (!opened.ok()) return Fail(opened.error().message);
  acct::Ledger& ledger = **opened;
  if (cfg && options.migrate) {
    Status s = ledger.SyncBudgets(*cfg);
    if (!s.ok()) return Fail(s.message());
  }
  if (p.command == "status") return RunStatus(ledger, p);
  if (p.command == "grant") return RunGrant(ledger, p);
  if (p.command == "report") return RunReport(ledger, p);
  return RunVerify(ledger);
}

}  // namespace dpgate::app
