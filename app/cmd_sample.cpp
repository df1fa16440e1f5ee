#include "commands.h"

namespace dpgate::app {

int RunSample(const Args& /*args*/) { return NotYetSupported("sample", "mechanisms (issue 3)"); }

}  // namespace dpgate::app
