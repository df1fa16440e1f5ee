// SQL-level EXECUTE: the prepared query with its parameters replaced by the
// EXECUTE's arguments, on the parse trees (docs/REWRITER.md §4.6).
#include "dpgate/rewriter/rewriter.h"
#include "tree.h"

namespace dpgate::rewriter {

namespace {

using google::protobuf::Message;

// Replaces every ParamRef below `message` with its argument; false when a
// parameter has no argument.
bool SubstituteParameters(Message* message, const std::vector<internal::pb::Node>& arguments) {
  if (message->GetDescriptor() == internal::pb::Node::descriptor()) {
    auto* node = static_cast<internal::pb::Node*>(message);
    if (node->has_param_ref()) {
      const int number = node->param_ref().number();
      if (number < 1 || static_cast<size_t>(number) > arguments.size()) return false;
      *node = arguments[static_cast<size_t>(number) - 1];
      return true;
    }
  }
  // AnyMutableChild stops at the first child that reports a missing argument.
  return !internal::AnyMutableChild(
      message, [&arguments](Message* child) { return !SubstituteParameters(child, arguments); });
}

}  // namespace

Result<std::string> BindSqlExecute(const std::string& prepare_sql, const std::string& execute_sql) {
  auto prepared = internal::Parse(prepare_sql);
  auto executed = internal::Parse(execute_sql);
  if (!prepared || !executed || prepared->stmts_size() != 1 || executed->stmts_size() != 1 ||
      !prepared->stmts(0).stmt().has_prepare_stmt() ||
      !executed->stmts(0).stmt().has_execute_stmt()) {
    return MakeError("XX000", "not a PREPARE and an EXECUTE statement");
  }
  const auto& prepare = prepared->stmts(0).stmt().prepare_stmt();
  const auto& execute = executed->stmts(0).stmt().execute_stmt();
  const int declared = prepare.argtypes_size();
  if (declared > 0 && execute.params_size() != declared) {
    return MakeError("42601", "wrong number of parameters for prepared statement \"" +
                                  prepare.name() + "\": expected " + std::to_string(declared) +
                                  ", got " + std::to_string(execute.params_size()));
  }
  std::vector<internal::pb::Node> arguments;
  for (int i = 0; i < execute.params_size(); ++i) {
    if (i >= declared) {
      arguments.push_back(execute.params(i));
      continue;
    }
    // The declared type, as PostgreSQL coerces each argument to it.
    internal::pb::Node cast;
    auto* type_cast = cast.mutable_type_cast();
    *type_cast->mutable_arg() = execute.params(i);
    *type_cast->mutable_type_name() = prepare.argtypes(i).type_name();
    type_cast->set_location(-1);
    arguments.push_back(std::move(cast));
  }
  internal::pb::Node query = prepare.query();
  if (!SubstituteParameters(&query, arguments)) {
    return MakeError("42601", "wrong number of parameters for prepared statement \"" +
                                  prepare.name() + "\": the statement uses more than the " +
                                  std::to_string(arguments.size()) + " given");
  }
  return internal::Deparse(query, prepared->version());
}

}  // namespace dpgate::rewriter
