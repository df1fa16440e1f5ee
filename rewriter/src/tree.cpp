#include "tree.h"

#include <google/protobuf/util/message_differencer.h>
#include <pg_query.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace dpgate::rewriter::internal {

namespace {

using google::protobuf::FieldDescriptor;

// Message-typed fields of every message of pg_query.proto (all top level,
// so indexed by Descriptor::index()), and pb::Node's members by field number.
struct ChildFieldTable {
  const google::protobuf::FileDescriptor* file = nullptr;
  const google::protobuf::Descriptor* node = nullptr;
  std::vector<std::vector<const FieldDescriptor*>> by_message;
  std::vector<const FieldDescriptor*> node_members;
};

const ChildFieldTable& ChildFieldsOf() {
  // Built once from the immutable descriptors and never changed after.
  static const ChildFieldTable kTable = [] {
    ChildFieldTable table;
    table.node = pb::Node::descriptor();
    table.file = table.node->file();
    for (int m = 0; m < table.file->message_type_count(); ++m) {
      const auto* descriptor = table.file->message_type(m);
      std::vector<const FieldDescriptor*> fields;
      for (int i = 0; i < descriptor->field_count(); ++i) {
        const auto* field = descriptor->field(i);
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) fields.push_back(field);
      }
      table.by_message.push_back(std::move(fields));
    }
    for (int i = 0; i < table.node->field_count(); ++i) {
      const auto* field = table.node->field(i);
      if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
      const auto number = static_cast<size_t>(field->number());
      if (table.node_members.size() <= number) table.node_members.resize(number + 1, nullptr);
      table.node_members[number] = field;
    }
    return table;
  }();
  return kTable;
}

}  // namespace

std::span<const FieldDescriptor* const> ChildFields(const google::protobuf::Message& message) {
  const auto& table = ChildFieldsOf();
  const auto* descriptor = message.GetDescriptor();
  if (descriptor == table.node) {
    const auto number = static_cast<size_t>(static_cast<const pb::Node&>(message).node_case());
    if (number >= table.node_members.size() || table.node_members[number] == nullptr) return {};
    return {&table.node_members[number], 1};
  }
  // Every walk starts at a parse-tree node and only descends into its
  // fields, so nothing else can get here; skipping another message's
  // children could hide a relation from the checks, so fail loudly.
  if (descriptor->file() != table.file || descriptor->containing_type() != nullptr) std::abort();
  const auto& fields = table.by_message[static_cast<size_t>(descriptor->index())];
  return {fields.data(), fields.size()};
}

bool AnyChild(const google::protobuf::Message& message,
              const std::function<bool(const google::protobuf::Message&)>& visit) {
  const auto* reflection = message.GetReflection();
  for (const auto* field : ChildFields(message)) {
    if (field->is_repeated()) {
      for (int j = 0; j < reflection->FieldSize(message, field); ++j) {
        if (visit(reflection->GetRepeatedMessage(message, field, j))) return true;
      }
    } else if (reflection->HasField(message, field) &&
               visit(reflection->GetMessage(message, field))) {
      return true;
    }
  }
  return false;
}

bool AnyMutableChild(google::protobuf::Message* message,
                     const std::function<bool(google::protobuf::Message*)>& visit) {
  const auto* reflection = message->GetReflection();
  for (const auto* field : ChildFields(*message)) {
    if (field->is_repeated()) {
      for (int j = 0; j < reflection->FieldSize(*message, field); ++j) {
        if (visit(reflection->MutableRepeatedMessage(message, field, j))) return true;
      }
    } else if (reflection->HasField(*message, field) &&
               visit(reflection->MutableMessage(message, field))) {
      return true;
    }
  }
  return false;
}

std::string DelimitedIdentifier(const std::string& name) {
  std::string out = "\"";
  for (const char ch : name) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return text;
}

Result<pb::ParseResult> Parse(const std::string& sql) {
  PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(sql.c_str());
  if (parsed.error != nullptr) {
    // cursorpos is 1-based in characters... libpg_query reports a byte offset + 1.
    const int offset = parsed.error->cursorpos > 0 ? parsed.error->cursorpos - 1 : -1;
    std::string message = std::string("syntax error");
    if (offset >= 0) message += " at " + Position(sql, offset);
    message += ": ";
    message += parsed.error->message != nullptr ? parsed.error->message : "could not parse";
    pg_query_free_protobuf_parse_result(parsed);
    return MakeError("42601", message);
  }
  pb::ParseResult tree;
  const bool ok =
      tree.ParseFromArray(parsed.parse_tree.data, static_cast<int>(parsed.parse_tree.len));
  pg_query_free_protobuf_parse_result(parsed);
  if (!ok) return MakeError("XX000", "internal error: could not decode the parse tree");
  return tree;
}

Result<std::string> Deparse(pb::Node stmt, int32_t version) {
  pb::ParseResult tree;
  tree.set_version(version);
  *tree.add_stmts()->mutable_stmt() = std::move(stmt);
  std::string bytes;
  if (!tree.SerializeToString(&bytes)) {
    return MakeError("XX000", "internal error: could not encode the parse tree");
  }
  PgQueryProtobuf buffer{bytes.size(), bytes.data()};
  PgQueryDeparseResult deparsed = pg_query_deparse_protobuf(buffer);
  if (deparsed.error != nullptr) {
    std::string message =
        std::string("internal error: could not deparse the rewritten statement: ") +
        (deparsed.error->message != nullptr ? deparsed.error->message : "");
    pg_query_free_deparse_result(deparsed);
    return MakeError("XX000", message);
  }
  std::string text = deparsed.query != nullptr ? deparsed.query : "";
  pg_query_free_deparse_result(deparsed);
  return text;
}

std::string Position(std::string_view sql, int location) {
  if (location < 0) return "an unknown position";
  const size_t end = std::min(static_cast<size_t>(location), sql.size());
  int line = 1;
  int column = 1;
  for (size_t i = 0; i < end; ++i) {
    const auto byte = static_cast<unsigned char>(sql[i]);
    if (byte == '\n') {
      ++line;
      column = 1;
    } else if ((byte & 0xC0) != 0x80) {  // count characters, not UTF-8 continuation bytes
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

pb::Node MakeColumnRef(const std::vector<std::string>& names) {
  pb::Node node;
  auto* ref = node.mutable_column_ref();
  for (const auto& name : names) ref->add_fields()->mutable_string()->set_sval(name);
  ref->set_location(-1);
  return node;
}

pb::Node MakeStar() {
  pb::Node node;
  auto* ref = node.mutable_column_ref();
  ref->add_fields()->mutable_a_star();
  ref->set_location(-1);
  return node;
}

std::string FormatNumber(double value) {
  if (value == 0) return "0";  // also folds -0
  char buffer[64];
  // Plain decimal (no exponent) so SQL literals read naturally; shortest
  // digits that round-trip. Values beyond 1e21 fall back to the exponent form.
  const auto format =
      std::fabs(value) < 1e21 ? std::chars_format::fixed : std::chars_format::general;
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value, format);
  if (ec != std::errc()) return "0";
  return std::string(buffer, end);
}

pb::Node MakeInteger(int64_t value) {
  pb::Node node;
  auto* constant = node.mutable_a_const();
  if (value >= std::numeric_limits<int32_t>::min() &&
      value <= std::numeric_limits<int32_t>::max()) {
    constant->mutable_ival()->set_ival(static_cast<int32_t>(value));
  } else {
    // PostgreSQL's own parser keeps integers beyond int4 as Float nodes.
    constant->mutable_fval()->set_fval(std::to_string(value));
  }
  constant->set_location(-1);
  return node;
}

pb::Node MakeNumeric(double value) {
  std::string text = FormatNumber(value);
  // A literal with '.' or an exponent is typed numeric by PostgreSQL, so
  // clamped values are numeric and cannot overflow a small integer type
  // (docs/REWRITER.md §6.3).
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  const bool negative = !text.empty() && text[0] == '-';
  pb::Node node;
  auto* constant = node.mutable_a_const();
  constant->mutable_fval()->set_fval(negative ? text.substr(1) : text);
  constant->set_location(-1);
  if (!negative) return node;
  // A negative literal is unary minus applied to a positive one, as PostgreSQL parses it.
  pb::Node minus;
  auto* expr = minus.mutable_a_expr();
  expr->set_kind(pb::AEXPR_OP);
  expr->add_name()->mutable_string()->set_sval("-");
  *expr->mutable_rexpr() = std::move(node);
  expr->set_location(-1);
  return minus;
}

pb::Node MakeString(const std::string& value) {
  pb::Node node;
  auto* constant = node.mutable_a_const();
  constant->mutable_sval()->set_sval(value);
  constant->set_location(-1);
  return node;
}

pb::Node MakeNull() {
  pb::Node node;
  node.mutable_a_const()->set_isnull(true);
  node.mutable_a_const()->set_location(-1);
  return node;
}

pb::Node MakeFunc(const std::vector<std::string>& name, std::vector<pb::Node> args) {
  pb::Node node;
  auto* call = node.mutable_func_call();
  for (const auto& part : name) call->add_funcname()->mutable_string()->set_sval(part);
  for (auto& arg : args) *call->add_args() = std::move(arg);
  call->set_funcformat(pb::COERCE_EXPLICIT_CALL);
  call->set_location(-1);
  return node;
}

pb::Node MakeCountStar() {
  pb::Node node = MakeFunc({"pg_catalog", "count"}, {});
  node.mutable_func_call()->set_agg_star(true);
  return node;
}

pb::Node MakeMinMax(pb::MinMaxOp op, std::vector<pb::Node> args) {
  pb::Node node;
  auto* expr = node.mutable_min_max_expr();
  expr->set_op(op);
  for (auto& arg : args) *expr->add_args() = std::move(arg);
  expr->set_location(-1);
  return node;
}

pb::Node MakeOp(const std::string& op, pb::Node left, pb::Node right) {
  pb::Node node;
  auto* expr = node.mutable_a_expr();
  expr->set_kind(pb::AEXPR_OP);
  expr->add_name()->mutable_string()->set_sval(op);
  *expr->mutable_lexpr() = std::move(left);
  *expr->mutable_rexpr() = std::move(right);
  expr->set_location(-1);
  return node;
}

pb::Node MakeAnd(std::vector<pb::Node> args) {
  if (args.size() == 1) return std::move(args[0]);
  pb::Node node;
  auto* expr = node.mutable_bool_expr();
  expr->set_boolop(pb::AND_EXPR);
  for (auto& arg : args) *expr->add_args() = std::move(arg);
  expr->set_location(-1);
  return node;
}

pb::Node MakeNullTest(pb::Node arg, bool is_null) {
  pb::Node node;
  auto* test = node.mutable_null_test();
  *test->mutable_arg() = std::move(arg);
  test->set_nulltesttype(is_null ? pb::IS_NULL : pb::IS_NOT_NULL);
  test->set_location(-1);
  return node;
}

pb::Node MakeCaseWhen(pb::Node condition, pb::Node then_value, pb::Node else_value) {
  pb::Node node;
  auto* expr = node.mutable_case_expr();
  pb::Node when;
  *when.mutable_case_when()->mutable_expr() = std::move(condition);
  *when.mutable_case_when()->mutable_result() = std::move(then_value);
  when.mutable_case_when()->set_location(-1);
  *expr->add_args() = std::move(when);
  *expr->mutable_defresult() = std::move(else_value);
  expr->set_location(-1);
  return node;
}

pb::Node MakeResTarget(const std::string& name, pb::Node value) {
  pb::Node node;
  auto* target = node.mutable_res_target();
  target->set_name(name);
  *target->mutable_val() = std::move(value);
  target->set_location(-1);
  return node;
}

pb::Node MakeCast(pb::Node value, const std::vector<std::string>& type, bool array) {
  pb::Node node;
  auto* cast = node.mutable_type_cast();
  *cast->mutable_arg() = std::move(value);
  auto* type_name = cast->mutable_type_name();
  for (const auto& part : type) type_name->add_names()->mutable_string()->set_sval(part);
  type_name->set_typemod(-1);
  if (array) type_name->add_array_bounds()->mutable_integer()->set_ival(-1);
  type_name->set_location(-1);
  cast->set_location(-1);
  return node;
}

pb::Node MakeTextKey(pb::Node x) {
  pb::Node node;
  auto* collate = node.mutable_collate_clause();
  *collate->mutable_arg() = MakeCast(std::move(x), {"pg_catalog", "text"});
  collate->add_collname()->mutable_string()->set_sval("pg_catalog");
  collate->add_collname()->mutable_string()->set_sval("C");
  collate->set_location(-1);
  return node;
}

pb::Node MakeInList(pb::Node left, const std::vector<std::string>& values) {
  pb::Node node;
  auto* expr = node.mutable_a_expr();
  expr->set_kind(pb::AEXPR_IN);
  expr->add_name()->mutable_string()->set_sval("=");
  *expr->mutable_lexpr() = std::move(left);
  auto* list = expr->mutable_rexpr()->mutable_list();
  for (const auto& value : values) *list->add_items() = MakeString(value);
  expr->set_location(-1);
  return node;
}

pb::Node MakeClamp(pb::Node x, double lo, double hi) {
  std::vector<pb::Node> inner;
  inner.push_back(std::move(x));
  inner.push_back(MakeNumeric(lo));
  std::vector<pb::Node> outer;
  outer.push_back(MakeMinMax(pb::IS_GREATEST, std::move(inner)));
  outer.push_back(MakeNumeric(hi));
  return MakeMinMax(pb::IS_LEAST, std::move(outer));
}

std::string FunctionName(const pb::FuncCall& call, std::string* schema) {
  std::string name;
  std::string qualifier;
  for (const auto& part : call.funcname()) {
    if (!part.has_string()) continue;
    qualifier = name;
    name = part.string().sval();
  }
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (schema != nullptr) *schema = qualifier;
  return name;
}

std::string DerivedColumnName(const pb::Node& value) {
  // FigureColnameInternal in PostgreSQL's parse_target.c, for the node kinds
  // the rewriter accepts.
  switch (value.node_case()) {
    case pb::Node::kColumnRef: {
      const auto& fields = value.column_ref().fields();
      if (!fields.empty() && fields.rbegin()->has_string()) return fields.rbegin()->string().sval();
      return "?column?";
    }
    case pb::Node::kFuncCall:
      return FunctionName(value.func_call());
    case pb::Node::kTypeCast: {
      std::string inner = DerivedColumnName(value.type_cast().arg());
      if (inner != "?column?") return inner;
      const auto& names = value.type_cast().type_name().names();
      if (!names.empty() && names.rbegin()->has_string()) return names.rbegin()->string().sval();
      return "?column?";
    }
    case pb::Node::kCaseExpr:
      return "case";
    case pb::Node::kCoalesceExpr:
      return "coalesce";
    case pb::Node::kMinMaxExpr:
      return value.min_max_expr().op() == pb::IS_GREATEST ? "greatest" : "least";
    default:
      return "?column?";
  }
}

void ClearLocations(google::protobuf::Message* message) {
  const auto* descriptor = message->GetDescriptor();
  const auto* reflection = message->GetReflection();
  if (descriptor == pb::Node::descriptor()) {
    // A Node has no location of its own: only its one set member matters.
    for (const auto* field : ChildFields(*message))
      ClearLocations(reflection->MutableMessage(message, field));
    return;
  }
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    if (field->name() == "location" &&
        field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_INT32) {
      reflection->ClearField(message, field);
      continue;
    }
    if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (field->is_repeated()) {
      for (int j = 0; j < reflection->FieldSize(*message, field); ++j) {
        ClearLocations(reflection->MutableRepeatedMessage(message, field, j));
      }
    } else if (reflection->HasField(*message, field)) {
      ClearLocations(reflection->MutableMessage(message, field));
    }
  }
}

bool SameTree(const pb::Node& a, const pb::Node& b) {
  pb::Node x = a;
  pb::Node y = b;
  ClearLocations(&x);
  ClearLocations(&y);
  return google::protobuf::util::MessageDifferencer::Equals(x, y);
}

bool SameClearedTree(const pb::Node& a, const pb::Node& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace dpgate::rewriter::internal
