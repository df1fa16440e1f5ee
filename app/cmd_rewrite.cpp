#include "commands.h"

namespace dpgate::app {

int RunRewrite(const Args& /*args*/) { return NotYetSupported("rewrite", "the rewriter (issue 4)"); }

}  // namespace dpgate::app
