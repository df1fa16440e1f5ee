// dpgate rewrite -c FILE [--json] [--search-path a,b] [--user NAME]
// [--upstream] "SQL": classify every statement of SQL and print its class,
// rewritten SQL and ReleasePlan (DESIGN.md §3). No data is touched and no
// budget is spent; --upstream reads only the catalog (schema facts).
// Exit status: 0 when every statement was classified (refusals included),
// 1 on a bad config or an internal error, 2 on a usage error.
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "dpgate/config/config.h"
#include "dpgate/rewriter/rewriter.h"
#include "schema_facts_loader.h"

namespace dpgate::app {
namespace {

void PrintRewriteUsage(std::FILE* out) {
  std::fprintf(
      out,
      "usage: dpgate rewrite -c FILE [--json] [--search-path S1,S2] [--user NAME] [--upstream]\n"
      "                      \"SQL\"\n"
      "\n"
      "Classifies every statement of SQL as private_aggregate, public, catalog,\n"
      "session, dpgate_command or refused, and prints the SQL dpgate would send\n"
      "upstream and the ReleasePlan it would apply (docs/REWRITER.md).\n"
      "\n"
      "options:\n"
      "  -c, --config FILE     the dpgate YAML config\n"
      "  --json                one JSON object per statement, one per line\n"
      "  --search-path LIST    the session search_path (default: \"$user\",public)\n"
      "  --user NAME           the analyst, for \"$user\" in the search_path\n"
      "  --upstream            read schema facts (unique NOT NULL columns) from the\n"
      "                        config's upstream catalog, as dpgate serve does, so the\n"
      "                        cheaper per_row shape can be chosen (docs/REWRITER.md §8.5)\n"
      "  -h, --help            show this help\n"
      "\n"
      "exit status: 0 when every statement was classified (refusals included),\n"
      "1 on a bad config or an internal error, 2 on a usage error\n");
}

std::vector<std::string> SplitComma(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    const auto begin = item.find_first_not_of(" \t");
    const auto end = item.find_last_not_of(" \t");
    if (begin == std::string::npos) continue;
    item = item.substr(begin, end - begin + 1);
    // Accept the PostgreSQL spelling "$user" with its quotes.
    if (item.size() >= 2 && item.front() == '"' && item.back() == '"')
      item = item.substr(1, item.size() - 2);
    out.push_back(item);
  }
  return out;
}

}  // namespace

int RunRewrite(const Args& args) {
  std::string config_path;
  std::string sql;
  bool json = false;
  bool have_sql = false;
  bool upstream = false;
  rewriter::SessionContext session;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "dpgate rewrite: %s needs a value\n", arg.c_str());
        return false;
      }
      *out = args[++i];
      return true;
    };
    if (arg == "-h" || arg == "--help") {
      PrintRewriteUsage(stdout);
      return 0;
    } else if (arg == "-c" || arg == "--config") {
      if (!value(&config_path)) return 2;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--upstream") {
      upstream = true;
    } else if (arg == "--search-path") {
      std::string list;
      if (!value(&list)) return 2;
      session.search_path = SplitComma(list);
    } else if (arg == "--user") {
      if (!value(&session.user)) return 2;
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      std::fprintf(stderr, "dpgate rewrite: unknown option %s\n\n", arg.c_str());
      PrintRewriteUsage(stderr);
      return 2;
    } else if (have_sql) {
      std::fprintf(stderr, "dpgate rewrite: give the SQL as one argument (quote it)\n");
      return 2;
    } else {
      sql = arg;
      have_sql = true;
    }
  }
  if (config_path.empty() || !have_sql) {
    PrintRewriteUsage(stderr);
    return 2;
  }
  auto config = config::LoadConfig(config_path);
  if (!config) {
    std::fprintf(stderr, "dpgate rewrite: %s\n", config.error().message.c_str());
    return 1;
  }
  // Show the ε/δ split of the config's default per-query budget.
  session.epsilon = config->query.epsilon;
  session.delta = config->query.delta;
  rewriter::SchemaFacts facts;
  if (upstream) {
    auto loaded = LoadSchemaFacts(*config, config->upstream.dsn);
    if (!loaded) {
      std::fprintf(stderr, "dpgate rewrite: %s\n", loaded.error().message.c_str());
      return 1;
    }
    facts = std::move(loaded).value();
    // stderr, so that --json output stays one object per line.
    std::fprintf(stderr, "dpgate rewrite: schema facts: %zu unique NOT NULL column%s upstream\n",
                 facts.unique_column_count(), facts.unique_column_count() == 1 ? "" : "s");
  }
  auto results = rewriter::Classify(sql, *config, session, facts);
  if (!results) {
    std::fprintf(stderr, "dpgate rewrite: internal error: %s\n", results.error().message.c_str());
    return 1;
  }
  for (size_t i = 0; i < results->size(); ++i) {
    const auto& result = (*results)[i];
    if (json) {
      std::printf("%s\n", rewriter::ToJson(result).c_str());
    } else {
      if (i > 0) std::printf("\n");
      std::printf("%s", rewriter::ToText(result).c_str());
    }
  }
  return 0;
}

}  // namespace dpgate::app
