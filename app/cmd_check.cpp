#include "commands.h"

namespace dpgate::app {

int RunCheck(const Args& /*args*/) { return NotYetSupported("check", "dpgate check (issue 2)"); }

}  // namespace dpgate::app
