// Text and JSON renderings of classification results and ReleasePlans, for
// `dpgate rewrite` and EXPLAIN (DP). A small JSON writer of our own: strings
// are escaped per RFC 8259 (quote, backslash, control characters); bytes of
// invalid UTF-8 are replaced so the output is always valid JSON.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "dpgate/rewriter/rewriter.h"
#include "tree.h"

namespace dpgate::rewriter {

const char* ToString(ColumnRole role) {
  switch (role) {
    case ColumnRole::kGroupKey:
      return "group_key";
    case ColumnRole::kCount:
      return "count";
    case ColumnRole::kCountDistinctUnits:
      return "count_distinct_units";
    case ColumnRole::kSum:
      return "sum";
    case ColumnRole::kAvg:
      return "avg";
    case ColumnRole::kVariance:
      return "variance";
    case ColumnRole::kStddev:
      return "stddev";
  }
  return "unknown";
}

const char* ToString(ValueType type) {
  switch (type) {
    case ValueType::kFromUpstream:
      return "from_upstream";
    case ValueType::kInt8:
      return "int8";
    case ValueType::kFloat8:
      return "float8";
  }
  return "unknown";
}

const char* ToString(PartitionSelection::Kind kind) {
  switch (kind) {
    case PartitionSelection::Kind::kNone:
      return "none";
    case PartitionSelection::Kind::kPublicKeys:
      return "public_keys";
    case PartitionSelection::Kind::kThreshold:
      return "threshold";
  }
  return "unknown";
}

const char* ToString(PlanShape shape) {
  switch (shape) {
    case PlanShape::kPerUnitBounded:
      return "per_unit_bounded";
    case PlanShape::kPerUnitNoRowNumber:
      return "per_unit_no_row_number";
    case PlanShape::kPerRow:
      return "per_row";
  }
  return "unknown";
}

namespace {

// Length of a valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t Utf8Length(const std::string& s, size_t i) {
  const auto byte = static_cast<unsigned char>(s[i]);
  size_t length = 0;
  uint32_t min = 0;
  if (byte < 0x80) return 1;
  if ((byte & 0xE0) == 0xC0) {
    length = 2;
    min = 0x80;
  } else if ((byte & 0xF0) == 0xE0) {
    length = 3;
    min = 0x800;
  } else if ((byte & 0xF8) == 0xF0) {
    length = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + length > s.size()) return 0;
  uint32_t code = byte & (0xFF >> (length + 1));
  for (size_t j = 1; j < length; ++j) {
    const auto next = static_cast<unsigned char>(s[i + j]);
    if ((next & 0xC0) != 0x80) return 0;
    code = (code << 6) | (next & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return length;
}

std::string Quote(const std::string& text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    switch (byte) {
      case '"':
        out += "\\\"";
        ++i;
        continue;
      case '\\':
        out += "\\\\";
        ++i;
        continue;
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      default:
        break;
    }
    if (byte < 0x20 || byte == 0x7F) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", byte);
      out += buffer;
      ++i;
      continue;
    }
    const size_t length = Utf8Length(text, i);
    if (length == 0) {
      out += "\\ufffd";  // invalid UTF-8 byte
      ++i;
      continue;
    }
    out.append(text, i, length);
    i += length;
  }
  out += '"';
  return out;
}

std::string Number(double value) {
  if (!std::isfinite(value)) return "null";
  return internal::FormatNumber(value);
}

class JsonObject {
 public:
  JsonObject& Raw(const std::string& key, const std::string& json) {
    out_ += (out_.empty() ? "{" : ",") + Quote(key) + ":" + json;
    return *this;
  }
  JsonObject& Str(const std::string& key, const std::string& value) {
    return Raw(key, Quote(value));
  }
  JsonObject& Num(const std::string& key, double value) { return Raw(key, Number(value)); }
  JsonObject& Int(const std::string& key, int64_t value) { return Raw(key, std::to_string(value)); }
  JsonObject& Bool(const std::string& key, bool value) {
    return Raw(key, value ? "true" : "false");
  }
  std::string Done() const { return out_.empty() ? "{}" : out_ + "}"; }

 private:
  std::string out_;
};

template <typename T, typename F>
std::string Array(const std::vector<T>& items, F render) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ",";
    out += render(items[i]);
  }
  return out + "]";
}

std::string SensitivityJson(const AggregateSensitivity& s) {
  return JsonObject()
      .Num("per_group", s.per_group)
      .Int("max_groups", s.max_groups)
      .Num("l1", s.L1())
      .Num("l2", s.L2())
      .Done();
}

std::string QuantityJson(const NoisedQuantity& q) {
  return JsonObject()
      .Str("kind", q.kind)
      .Int("sql_column", q.sql_column)
      .Raw("sensitivity", SensitivityJson(q.sensitivity))
      .Num("budget_weight", q.budget_weight)
      .Num("epsilon", q.epsilon)
      .Num("delta", q.delta)
      .Done();
}

std::string ColumnJson(const OutputColumn& c) {
  JsonObject object;
  object.Str("name", c.name).Str("role", ToString(c.role)).Str("type", ToString(c.type));
  if (c.role == ColumnRole::kGroupKey) object.Int("sql_column", c.group_key_sql_column);
  if (!c.source_column.empty()) object.Str("source_column", c.source_column);
  if (!c.source_table.empty()) object.Str("source_table", c.source_table);
  if (c.lower) object.Num("lower", *c.lower);
  if (c.upper) object.Num("upper", *c.upper);
  if (c.midpoint) object.Num("midpoint", *c.midpoint);
  if (!c.inputs.empty()) object.Raw("inputs", Array(c.inputs, QuantityJson));
  return object.Done();
}

std::string FilterJson(const PostFilter& f) {
  JsonObject object;
  switch (f.kind) {
    case PostFilter::Kind::kAnd:
      return object.Str("op", "and").Raw("args", Array(f.children, FilterJson)).Done();
    case PostFilter::Kind::kOr:
      return object.Str("op", "or").Raw("args", Array(f.children, FilterJson)).Done();
    case PostFilter::Kind::kNot:
      return object.Str("op", "not").Raw("args", Array(f.children, FilterJson)).Done();
    case PostFilter::Kind::kIsNull:
      return object.Str("op", "is_null").Int("column", f.column).Done();
    case PostFilter::Kind::kIsNotNull:
      return object.Str("op", "is_not_null").Int("column", f.column).Done();
    case PostFilter::Kind::kColumnIsTrue:
      return object.Str("op", "is_true").Int("column", f.column).Done();
    case PostFilter::Kind::kCompare:
      object.Str("op", f.op).Int("column", f.column);
      if (f.constant_is_numeric) return object.Raw("constant", f.constant).Done();
      return object.Str("constant", f.constant).Done();
  }
  return object.Done();
}

std::string FilterText(const PostFilter& f, const ReleasePlan& plan) {
  const auto name = [&](int column) {
    return column >= 0 && column < static_cast<int>(plan.columns.size()) ? plan.columns[column].name
                                                                         : std::string("?");
  };
  switch (f.kind) {
    case PostFilter::Kind::kAnd:
    case PostFilter::Kind::kOr: {
      std::string out = "(";
      for (size_t i = 0; i < f.children.size(); ++i) {
        if (i > 0) out += f.kind == PostFilter::Kind::kAnd ? " AND " : " OR ";
        out += FilterText(f.children[i], plan);
      }
      return out + ")";
    }
    case PostFilter::Kind::kNot:
      return "NOT " + (f.children.empty() ? std::string("?") : FilterText(f.children[0], plan));
    case PostFilter::Kind::kIsNull:
      return name(f.column) + " IS NULL";
    case PostFilter::Kind::kIsNotNull:
      return name(f.column) + " IS NOT NULL";
    case PostFilter::Kind::kColumnIsTrue:
      return name(f.column);
    case PostFilter::Kind::kCompare:
      return name(f.column) + " " + f.op + " " +
             (f.constant_is_numeric ? f.constant : "'" + f.constant + "'");
  }
  return "?";
}

}  // namespace

std::string ToJson(const ReleasePlan& plan) {
  JsonObject selection;
  const auto& ps = plan.partition_selection;
  selection.Str("kind", ToString(ps.kind));
  if (ps.kind == PartitionSelection::Kind::kPublicKeys) {
    selection.Raw("public_keys", Array(ps.public_keys, [](const std::vector<std::string>& keys) {
                    return Array(keys, Quote);
                  }));
  }
  selection.Int("units_sql_column", ps.units_sql_column)
      .Int("max_groups_contributed", ps.max_groups_contributed)
      .Num("budget_weight", ps.budget_weight)
      .Num("epsilon", ps.epsilon)
      .Num("delta", ps.delta);
  JsonObject object;
  object.Str("dataset", plan.dataset)
      .Str("table", plan.table)
      .Str("privacy_unit", plan.privacy_unit)
      .Raw("joined_tables", Array(plan.joined_tables, Quote))
      .Int("max_groups_contributed", plan.max_groups_contributed)
      .Int("max_rows_per_group", plan.max_rows_per_group)
      .Str("shape", ToString(plan.shape))
      .Str("shape_reason", plan.shape_reason)
      .Raw("sql_columns", Array(plan.sql_columns, Quote))
      .Raw("columns", Array(plan.columns, ColumnJson))
      .Raw("partition_selection", selection.Done())
      .Raw("having", plan.having ? FilterJson(*plan.having) : "null")
      .Raw("order_by", Array(plan.order_by,
                             [](const OrderKey& key) {
                               return JsonObject()
                                   .Int("column", key.output_column)
                                   .Bool("descending", key.descending)
                                   .Bool("nulls_first", key.nulls_first)
                                   .Done();
                             }))
      .Raw("limit", plan.limit ? std::to_string(*plan.limit) : "null")
      .Raw("offset", plan.offset ? std::to_string(*plan.offset) : "null")
      .Bool("budget_split_filled", plan.budget_split_filled);
  return object.Done();
}

std::string ToJson(const StatementResult& result) {
  JsonObject object;
  object.Str("class", ToString(result.statement_class));
  if (result.statement_class == StatementClass::kRefused) {
    object.Raw("reason", JsonObject()
                             .Str("sqlstate", result.reason.code)
                             .Str("message", result.reason.message)
                             .Done());
  } else {
    object.Raw("reason", "null");
  }
  object.Str("original_sql", result.original_sql)
      .Raw("rewritten_sql", result.rewritten_sql.empty() ? "null" : Quote(result.rewritten_sql))
      .Raw("plan", result.plan ? ToJson(*result.plan) : "null")
      .Str("fingerprint", result.fingerprint_hex)
      .Raw("dataset", result.dataset.empty() ? "null" : Quote(result.dataset))
      .Raw("relations", Array(result.relations, Quote))
      .Bool("reads_size_catalog", result.reads_size_catalog);
  if (result.command != DpgateCommandKind::kNone) object.Str("command", ToString(result.command));
  if (result.command_value) object.Num("command_value", *result.command_value);
  if (result.new_search_path) object.Raw("new_search_path", Array(*result.new_search_path, Quote));
  return object.Done();
}

std::string ToText(const StatementResult& result) {
  std::ostringstream out;
  out << "statement: " << result.original_sql << "\n";
  out << "class: " << ToString(result.statement_class) << "\n";
  if (result.statement_class == StatementClass::kRefused) {
    out << "reason: " << result.reason.code << " " << result.reason.message << "\n";
    return out.str();
  }
  if (result.command != DpgateCommandKind::kNone)
    out << "command: " << ToString(result.command) << "\n";
  if (result.command_value)
    out << "value: " << internal::FormatNumber(*result.command_value) << "\n";
  if (!result.relations.empty()) {
    out << "relations:";
    for (const auto& relation : result.relations) out << " " << relation;
    out << "\n";
  }
  if (result.reads_size_catalog) out << "note: reads table sizes that cannot be masked\n";
  if (!result.rewritten_sql.empty()) out << "rewritten SQL:\n  " << result.rewritten_sql << "\n";
  if (!result.plan) return out.str();
  const auto& plan = *result.plan;
  out << "release plan: dataset " << plan.dataset << ", table " << plan.table;
  for (const auto& joined : plan.joined_tables) out << " joined with " << joined;
  out << ", unit " << plan.privacy_unit << ", k=" << plan.max_groups_contributed
      << ", c=" << plan.max_rows_per_group << "\n";
  out << "  shape: " << ToString(plan.shape) << " (" << plan.shape_reason << ")\n";
  out << "  sql columns:";
  for (size_t i = 0; i < plan.sql_columns.size(); ++i)
    out << " [" << i << "] " << plan.sql_columns[i];
  out << "\n";
  for (const auto& column : plan.columns) {
    out << "  column " << column.name << ": " << ToString(column.role) << " ("
        << ToString(column.type) << ")";
    if (column.role == ColumnRole::kGroupKey)
      out << " from sql column " << column.group_key_sql_column;
    if (column.lower && column.upper) {
      out << " clamp [" << internal::FormatNumber(*column.lower) << ", "
          << internal::FormatNumber(*column.upper) << "]";
    }
    out << "\n";
    for (const auto& input : column.inputs) {
      out << "    " << input.kind << " <- sql column " << input.sql_column
          << ": per-group sensitivity " << internal::FormatNumber(input.sensitivity.per_group)
          << ", L1 " << internal::FormatNumber(input.sensitivity.L1()) << ", L2 "
          << internal::FormatNumber(input.sensitivity.L2()) << ", weight "
          << internal::FormatNumber(input.budget_weight);
      if (plan.budget_split_filled) {
        out << ", epsilon " << internal::FormatNumber(input.epsilon) << ", delta "
            << internal::FormatNumber(input.delta);
      }
      out << "\n";
    }
  }
  const auto& ps = plan.partition_selection;
  out << "  partition selection: " << ToString(ps.kind);
  if (ps.kind == PartitionSelection::Kind::kThreshold) {
    out << " on sql column " << ps.units_sql_column << " (k=" << ps.max_groups_contributed << ")";
    if (plan.budget_split_filled) {
      out << ", epsilon " << internal::FormatNumber(ps.epsilon) << ", delta "
          << internal::FormatNumber(ps.delta);
    }
  }
  out << "\n";
  if (plan.having) out << "  having: " << FilterText(*plan.having, plan) << "\n";
  for (const auto& key : plan.order_by) {
    out << "  order by: " << plan.columns[key.output_column].name
        << (key.descending ? " DESC" : " ASC") << (key.nulls_first ? " NULLS FIRST" : " NULLS LAST")
        << "\n";
  }
  if (plan.offset) out << "  offset: " << *plan.offset << "\n";
  if (plan.limit) out << "  limit: " << *plan.limit << "\n";
  if (!plan.budget_split_filled) out << "  epsilon/delta split: not filled (no session budget)\n";
  return out.str();
}

}  // namespace dpgate::rewriter
