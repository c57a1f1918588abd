" The live log of promptrail runs (the promptrail://log buffer): a ━━━ header and outcome line per
" run, ── status changes, and entries as `time kind text` like `promptrail log` prints them.
if exists("b:current_syntax")
  finish
endif

syntax match promptrailLogRule /^━━━ .*$/ contains=promptrailLogBad
syntax match promptrailLogBad /\<\(failed\|cancelled\|budget_exceeded\|interrupted\)\>/ contained
syntax match promptrailLogStatus /^\(\[\x\+\] \)\=── .*$/
syntax match promptrailLogTime /^\(\[\x\+\] \)\=\d\d:\d\d:\d\d\(\.\d\+\)\=/ nextgroup=promptrailLogKind,promptrailLogAlarm skipwhite
syntax match promptrailLogKind /\S\+/ contained
syntax match promptrailLogAlarm /\<\(error\|stderr\)\>.*$/ contained

highlight default link promptrailLogRule Title
highlight default link promptrailLogBad WarningMsg
highlight default link promptrailLogStatus Special
highlight default link promptrailLogTime Comment
highlight default link promptrailLogKind Identifier
highlight default link promptrailLogAlarm ErrorMsg

let b:current_syntax = "promptrail-log"
