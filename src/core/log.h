/* log.h — how library code reports to its caller without printing: the sink of callbacks the caller provides.
 *
 * lmf_sink, its events and the helpers lmf_sink_logf / _progress / _text are public API and live in lmforge.h
 * (section "reporting"), where their contract is written; this header forwards them so library code keeps
 * including "core/log.h". The CLI's sinks print exactly what the commands printed before sinks existed. */
#ifndef LMF_CORE_LOG_H
#define LMF_CORE_LOG_H

#include "lmforge.h"

#endif
