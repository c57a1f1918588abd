-- promptrail for Neovim: starts `promptrail serve` for buffers inside a git repository and shows
-- what it sends: code lenses over AI-written lines (refreshed on open, on save and when the server
-- asks), the live log of runs in a scratch buffer, and the final status of each run.
--
--   require("promptrail").setup({})            -- then :PromptrailRun {prompt}
--
-- Works on Neovim 0.7 (vim.lsp.start_client + vim.lsp.buf_attach_client, no vim.fs) and on current
-- Neovim (vim.lsp.start, client:request); the few places where they differ go through `compat`.

local format = require("promptrail.format")

local M = {}

local api = vim.api
local uv = vim.uv or vim.loop

local NAME = "promptrail"
local LOG_BUFFER = "promptrail://log"

local defaults = {
  -- The server: `promptrail serve` on PATH, or e.g. { "/path/to/.venv/bin/promptrail", "serve" }.
  cmd = { "promptrail", "serve" },
  cmd_env = nil,
  -- Defaults for :PromptrailRun, passed to `promptrail.runPrompt` (nil: the server's defaults).
  agent = nil, -- "claude-cli" | "replay"
  transcript = nil, -- the replay agent's recorded stream-json session
  model = nil,
  mode = nil, -- "isolated" | "direct"
  replay_delay = nil, -- seconds between replayed lines
  -- Which buffers get the server: nil = every file buffer inside a git repository.
  filetypes = nil,
  -- Open the log window when a run starts (:PromptrailLog opens it any time).
  open_log = true,
  log_height = 12,
  -- Extra client capabilities and an on_attach(client, bufnr) of your own.
  capabilities = nil,
  on_attach = nil,
}

M.config = vim.deepcopy(defaults)

-- Everything the plugin knows at run time; tests read it too.
M.state = {
  clients = {}, -- repository root -> client id
  ready = {}, -- client id -> true once `initialize` was answered
  waiting = {}, -- client id -> callbacks waiting for that
  runs = {}, -- run id -> { id, prompt, agent, model, mode, status, final, entries, last_seq, ... }
  order = {}, -- run ids in the order they were first seen
  pending = {}, -- client id -> run requests sent, whose run id is not known yet
  last_run = nil,
  last_client = nil, -- the client the last command went to
  log_buf = nil,
}

local notified_missing = false

-- -- compatibility ---------------------------------------------------------------------------------
local compat = {}

function compat.has(version)
  return vim.fn.has("nvim-" .. version) == 1
end

--- The promptrail clients attached to `bufnr` (or all of them when nil).
function compat.clients(bufnr)
  local found = {}
  if vim.lsp.get_clients then -- 0.10+
    found = vim.lsp.get_clients({ bufnr = bufnr, name = NAME })
  else
    local all = bufnr and vim.lsp.buf_get_clients(bufnr) or vim.lsp.get_active_clients()
    for _, client in pairs(all) do
      if client.name == NAME then
        found[#found + 1] = client
      end
    end
  end
  return found
end

function compat.request(client, method, params, handler, bufnr)
  if compat.has("0.11") then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function compat.buffers_of(client_id)
  if vim.lsp.get_buffers_by_client_id then
    return vim.lsp.get_buffers_by_client_id(client_id)
  end
  local client = vim.lsp.get_client_by_id(client_id)
  return client and vim.tbl_keys(client.attached_buffers or {}) or {}
end

--- Ask the server for the lenses of `bufnr` again (0.7–0.9 only know the current buffer).
function compat.refresh_lenses(bufnr)
  if not api.nvim_buf_is_valid(bufnr) or not api.nvim_buf_is_loaded(bufnr) then
    return
  end
  if compat.has("0.10") then
    vim.lsp.codelens.refresh({ bufnr = bufnr })
  else
    api.nvim_buf_call(bufnr, function()
      vim.lsp.codelens.refresh()
    end)
  end
end

local function notify(message, level)
  vim.notify("promptrail: " .. message, level or vim.log.levels.INFO)
end

-- -- repositories ----------------------------------------------------------------------------------
local function is_file_buffer(bufnr)
  if not api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= "" then
    return false
  end
  local name = api.nvim_buf_get_name(bufnr)
  return name ~= "" and not name:match("^%a[%w+.-]*://")
end

--- The folder holding `.git` (a directory, or a file in worktrees and submodules) above `path`.
function M.git_root(path)
  if not path or path == "" then
    return nil
  end
  local dir = vim.fn.fnamemodify(path, ":p")
  if vim.fn.isdirectory(dir) == 0 then
    dir = vim.fn.fnamemodify(dir, ":h")
  end
  dir = dir:gsub("/+$", "")
  while dir ~= "" do
    if uv.fs_stat(dir .. "/.git") then
      return dir
    end
    local parent = vim.fn.fnamemodify(dir, ":h")
    if parent == dir then
      break
    end
    dir = parent
  end
  return nil
end

local function wanted(bufnr)
  if not is_file_buffer(bufnr) then
    return false
  end
  local filetypes = M.config.filetypes
  return filetypes == nil or vim.tbl_contains(filetypes, vim.bo[bufnr].filetype)
end

-- -- the log buffer --------------------------------------------------------------------------------
local function log_buffer()
  local bufnr = M.state.log_buf
  if bufnr and api.nvim_buf_is_valid(bufnr) then
    return bufnr
  end
  bufnr = vim.fn.bufnr(LOG_BUFFER)
  if bufnr == -1 then
    bufnr = api.nvim_create_buf(false, true)
    api.nvim_buf_set_name(bufnr, LOG_BUFFER)
  end
  vim.bo[bufnr].buftype = "nofile"
  vim.bo[bufnr].bufhidden = "hide"
  vim.bo[bufnr].swapfile = false
  vim.bo[bufnr].modifiable = false
  vim.bo[bufnr].filetype = "promptrail-log"
  M.state.log_buf = bufnr
  return bufnr
end

--- Append lines to the log buffer; windows showing its end keep following it.
local function log_append(lines)
  if #lines == 0 then
    return
  end
  local bufnr = log_buffer()
  local before = api.nvim_buf_line_count(bufnr)
  local empty = before == 1 and api.nvim_buf_get_lines(bufnr, 0, 1, false)[1] == ""
  local following = {}
  for _, win in ipairs(vim.fn.win_findbuf(bufnr)) do
    if win ~= api.nvim_get_current_win() or api.nvim_win_get_cursor(win)[1] >= before then
      following[#following + 1] = win
    end
  end
  vim.bo[bufnr].modifiable = true
  api.nvim_buf_set_lines(bufnr, empty and 0 or -1, -1, false, lines)
  vim.bo[bufnr].modifiable = false
  local last = api.nvim_buf_line_count(bufnr)
  for _, win in ipairs(following) do
    api.nvim_win_set_cursor(win, { last, 0 })
  end
end

--- Show the log buffer in a window at the bottom (or focus the one that shows it).
function M.open_log(focus)
  local bufnr = log_buffer()
  local windows = vim.fn.win_findbuf(bufnr)
  if #windows == 0 then
    local previous = api.nvim_get_current_win()
    vim.cmd("botright " .. tostring(M.config.log_height) .. "split")
    api.nvim_win_set_buf(0, bufnr)
    vim.wo.number = false
    vim.wo.relativenumber = false
    vim.wo.wrap = false
    api.nvim_win_set_cursor(0, { api.nvim_buf_line_count(bufnr), 0 })
    if not focus then
      api.nvim_set_current_win(previous)
    end
  elseif focus then
    api.nvim_set_current_win(windows[1])
  end
  return bufnr
end

--- Several runs writing at once get their short id in front of each line.
local function prefix_for(run)
  for _, id in ipairs(M.state.order) do
    local other = M.state.runs[id]
    if id ~= run.id and other and not other.final then
      return run.id:sub(1, 8)
    end
  end
  return nil
end

--- The run `id` as this editor knows it; its header goes into the log the first time it is seen.
local function run_record(id, client_id)
  local run = M.state.runs[id]
  if run then
    return run
  end
  run = { id = id, entries = {}, last_seq = 0, final = false, client_id = client_id }
  local pending = client_id and M.state.pending[client_id]
  if pending and #pending > 0 then
    local request = table.remove(pending, 1)
    run.prompt, run.agent, run.model, run.mode = request.prompt, request.agent, request.model, request.mode
  end
  M.state.runs[id] = run
  M.state.order[#M.state.order + 1] = id
  M.state.last_run = id
  log_append({ format.header(run) })
  return run
end

-- -- handlers --------------------------------------------------------------------------------------
local handlers = {}

handlers["promptrail/log"] = function(_, params, ctx)
  if type(params) ~= "table" or not params.runId then
    return
  end
  local run = run_record(params.runId, ctx and ctx.client_id)
  local prefix = prefix_for(run)
  local lines = {}
  for _, entry in ipairs(params.entries or {}) do
    -- Batches arrive in order; a repeated one (a reconnect) is not shown twice.
    if type(entry.seq) ~= "number" or entry.seq > run.last_seq then
      run.last_seq = type(entry.seq) == "number" and entry.seq or run.last_seq
      run.entries[#run.entries + 1] = entry
      vim.list_extend(lines, format.entry_lines(entry, prefix))
    end
  end
  log_append(lines)
end

handlers["promptrail/runStatus"] = function(_, params, ctx)
  if type(params) ~= "table" or not params.runId then
    return
  end
  local run = run_record(params.runId, ctx and ctx.client_id)
  run.status = params.status
  run.commit = params.commit
  run.cost_usd = params.costUsd
  if not params.final then
    log_append({ format.status_line(params, prefix_for(run)) })
    return
  end
  run.final = true
  run.outcome = format.outcome(params)
  log_append({ format.footer(params) })
  local ok = params.status == "succeeded" or params.status == "no_changes"
  notify(run.outcome, ok and vim.log.levels.INFO or vim.log.levels.WARN)
end

-- The server asks for fresh lenses when a commit lands or a gate moves: answer at once (null), then
-- ask for the lenses of every buffer this client serves.
handlers["workspace/codeLens/refresh"] = function(_, _, ctx)
  local client_id = ctx and ctx.client_id
  vim.schedule(function()
    for _, bufnr in ipairs(client_id and compat.buffers_of(client_id) or {}) do
      compat.refresh_lenses(bufnr)
    end
  end)
  return vim.NIL
end

M.handlers = handlers

-- -- clients ---------------------------------------------------------------------------------------
local group = api.nvim_create_augroup("promptrail", { clear = true })
local buffer_group = api.nvim_create_augroup("promptrail_buffers", { clear = true })

local function capabilities()
  local base = vim.lsp.protocol.make_client_capabilities()
  base.workspace = base.workspace or {}
  -- Neovim 0.7 does not announce it, and the server only sends what the client supports.
  base.workspace.codeLens = vim.tbl_extend("force", base.workspace.codeLens or {}, { refreshSupport = true })
  return vim.tbl_deep_extend("force", base, M.config.capabilities or {})
end

local function on_attach(client, bufnr)
  M.state.last_client = client.id
  api.nvim_clear_autocmds({ group = buffer_group, buffer = bufnr })
  api.nvim_create_autocmd({ "BufEnter", "BufReadPost", "BufWritePost" }, {
    group = buffer_group,
    buffer = bufnr,
    callback = function()
      compat.refresh_lenses(bufnr)
    end,
  })
  compat.refresh_lenses(bufnr)
  if M.config.on_attach then
    M.config.on_attach(client, bufnr)
  end
end

local function client_config(root)
  return {
    name = NAME,
    cmd = M.config.cmd,
    cmd_cwd = root,
    cmd_env = M.config.cmd_env,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = root } },
    capabilities = capabilities(),
    handlers = handlers,
    -- A run's lens (`vim.lsp.codelens.run()`) opens the run here instead of discarding the answer.
    commands = {
      ["promptrail.showRun"] = function(command)
        local arguments = command.arguments and command.arguments[1]
        M.show(type(arguments) == "table" and arguments.runId or nil)
      end,
    },
    on_attach = on_attach,
    on_init = function(client)
      M.state.ready[client.id] = true
      local waiting = M.state.waiting[client.id] or {}
      M.state.waiting[client.id] = nil
      -- Scheduled: Neovim 0.7 calls on_init before it lists the client as active.
      vim.schedule(function()
        for _, callback in ipairs(waiting) do
          callback(client)
        end
      end)
    end,
    on_exit = function(code, signal, client_id)
      M.state.ready[client_id] = nil
      M.state.waiting[client_id] = nil
      for key, id in pairs(M.state.clients) do
        if id == client_id then
          M.state.clients[key] = nil
        end
      end
      if code ~= 0 and signal == 0 then
        vim.schedule(function()
          notify(string.format("the server (%s) exited with code %d; its output is in %s",
            table.concat(M.config.cmd, " "), code, vim.lsp.get_log_path()), vim.log.levels.ERROR)
        end)
      end
    end,
  }
end

local function server_missing()
  local program = M.config.cmd[1]
  if vim.fn.executable(program) == 1 then
    return false
  end
  if not notified_missing then
    notified_missing = true
    notify(string.format("cannot start the server: '%s' is not an executable; install promptrail "
      .. "(pip install promptrail) or set require('promptrail').setup({ cmd = { '/path/to/promptrail', 'serve' } })",
      program), vim.log.levels.ERROR)
  end
  return true
end

--- Start (or reuse) the client for `root`; attach `bufnr` to it when given. Returns the client id.
local function start(root, bufnr)
  if server_missing() then
    return nil
  end
  local id = M.state.clients[root]
  if id and not vim.lsp.get_client_by_id(id) then
    id = nil
  end
  if vim.lsp.start and bufnr then -- 0.8+: reuses the client with this name and root
    id = vim.lsp.start(client_config(root), { bufnr = bufnr })
  elseif not id then
    if compat.has("0.11") then
      id = vim.lsp.start(client_config(root), { attach = false })
    else
      id = vim.lsp.start_client(client_config(root))
    end
  end
  if id and bufnr and not vim.lsp.start then
    vim.lsp.buf_attach_client(bufnr, id)
  end
  M.state.clients[root] = id
  return id
end

--- Attach the server to `bufnr` (default: the current buffer) if it is a file in a git repository.
function M.attach(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  if not wanted(bufnr) then
    return nil
  end
  local root = M.git_root(api.nvim_buf_get_name(bufnr))
  if not root then
    return nil
  end
  return start(root, bufnr)
end

--- Call `callback(client)` with the initialized client for the current buffer's repository (else
--- the one used last, from the log buffer say, else the working directory's), starting one if needed.
local function with_client(callback)
  local bufnr = api.nvim_get_current_buf()
  local client = compat.clients(bufnr)[1]
  local id = client and client.id
  local root = is_file_buffer(bufnr) and M.git_root(api.nvim_buf_get_name(bufnr)) or nil
  if not id and not root and M.state.last_client and vim.lsp.get_client_by_id(M.state.last_client) then
    id = M.state.last_client
  end
  if not id then
    root = root or M.git_root(vim.fn.getcwd())
    if not root then
      notify("not inside a git repository (open a file in one, or :cd there)", vim.log.levels.ERROR)
      return
    end
    id = start(root, wanted(bufnr) and bufnr or nil)
    if not id then
      return
    end
  end
  M.state.last_client = id
  if M.state.ready[id] then
    callback(vim.lsp.get_client_by_id(id))
  else
    M.state.waiting[id] = M.state.waiting[id] or {}
    table.insert(M.state.waiting[id], callback)
  end
end

--- `workspace/executeCommand` on the current repository's server; `on_result(result)` on success.
function M.execute(command, arguments, on_result)
  local bufnr = api.nvim_get_current_buf()
  with_client(function(client)
    compat.request(client, "workspace/executeCommand", { command = command, arguments = { arguments } },
      function(err, result)
        if err then
          notify(command .. " failed: " .. tostring(err.message or vim.inspect(err)), vim.log.levels.ERROR)
          return
        end
        if on_result then
          on_result(result, client)
        end
      end, bufnr)
  end)
end

local function buffer_context(bufnr)
  if is_file_buffer(bufnr) then
    return vim.uri_from_bufnr(bufnr)
  end
  return nil
end

-- -- commands --------------------------------------------------------------------------------------
--- Run a prompt: `opts.prompt` plus optional agent, transcript, model, mode, replay_delay (else the
--- setup() defaults). The log window opens (setup{ open_log = false } keeps it closed).
function M.run(opts)
  opts = opts or {}
  local prompt = opts.prompt and vim.trim(opts.prompt) or ""
  if prompt == "" then
    notify("a prompt is required: :PromptrailRun {prompt}", vim.log.levels.ERROR)
    return
  end
  local function pick(key)
    if opts[key] ~= nil then
      return opts[key]
    end
    return M.config[key]
  end
  local transcript = pick("transcript")
  local arguments = {
    prompt = prompt,
    agent = pick("agent"),
    transcript = transcript and vim.fn.fnamemodify(transcript, ":p") or nil,
    model = pick("model"),
    mode = pick("mode"),
    replayDelay = pick("replay_delay"),
    uri = buffer_context(api.nvim_get_current_buf()),
  }
  if M.config.open_log then
    M.open_log(false)
  end
  with_client(function(client)
    M.state.pending[client.id] = M.state.pending[client.id] or {}
    table.insert(M.state.pending[client.id], arguments)
    compat.request(client, "workspace/executeCommand",
      { command = "promptrail.runPrompt", arguments = { arguments } }, function(err, result)
        if err then
          local pending = M.state.pending[client.id] or {}
          for index, request in ipairs(pending) do
            if request == arguments then
              table.remove(pending, index)
              break
            end
          end
          notify("run failed to start: " .. tostring(err.message or vim.inspect(err)), vim.log.levels.ERROR)
          log_append({ "━━━ run failed to start: " .. format.one_line(err.message, 200) .. " ━━━" })
          return
        end
        local run = run_record(result.runId, client.id)
        M.state.last_run = run.id
      end)
  end)
end

--- The run the user means: `ref` if given, else the run of the lens on the cursor line, else the
--- newest run started or seen in this editor.
local function chosen_run(ref)
  if ref and ref ~= "" then
    return ref
  end
  local line = api.nvim_win_get_cursor(0)[1] - 1
  for _, lens in ipairs(vim.lsp.codelens.get(0) or {}) do
    local range = lens.range
    if range and range.start.line <= line and line <= range["end"].line then
      local data = type(lens.data) == "table" and lens.data or nil
      local arguments = lens.command and lens.command.arguments
      local from_command = type(arguments) == "table" and type(arguments[1]) == "table" and arguments[1].runId
      local id = (data and data.runId) or from_command
      if id then
        return id
      end
    end
  end
  return M.state.last_run
end

function M.cancel(ref)
  local id = ref
  if not id or id == "" then
    for index = #M.state.order, 1, -1 do
      local run = M.state.runs[M.state.order[index]]
      if not run.final then
        id = run.id
        break
      end
    end
  end
  if not id then
    notify("no run is going; :PromptrailCancel {run id} cancels another", vim.log.levels.WARN)
    return
  end
  M.execute("promptrail.cancelRun", { runId = id }, function(result)
    notify(string.format("run %s %s", result.runId, result.status))
  end)
end

--- Show a run (`ref`, the lens under the cursor, or the last run) in a scratch buffer.
function M.show(ref)
  local function render(id)
    M.execute("promptrail.showRun", { runId = id, uri = buffer_context(api.nvim_get_current_buf()) },
      function(run)
        local known = M.state.runs[run.id]
        local lines = format.show_lines(run, known and known.entries or {})
        local name = "promptrail://run/" .. run.id
        local bufnr = vim.fn.bufnr(name)
        if bufnr == -1 then
          bufnr = api.nvim_create_buf(false, true)
          api.nvim_buf_set_name(bufnr, name)
          vim.bo[bufnr].buftype = "nofile"
          vim.bo[bufnr].bufhidden = "wipe"
          vim.bo[bufnr].swapfile = false
          vim.bo[bufnr].filetype = "promptrail-run"
        end
        vim.bo[bufnr].modifiable = true
        api.nvim_buf_set_lines(bufnr, 0, -1, false, lines)
        vim.bo[bufnr].modifiable = false
        local windows = vim.fn.win_findbuf(bufnr)
        if #windows > 0 then
          api.nvim_set_current_win(windows[1])
        else
          vim.cmd("split")
          api.nvim_win_set_buf(0, bufnr)
        end
        api.nvim_buf_set_keymap(bufnr, "n", "q", "<cmd>close<cr>", { noremap = true, silent = true })
      end)
  end
  local id = chosen_run(ref)
  if id then
    render(id)
    return
  end
  M.execute("promptrail.history", { limit = 1 }, function(rows)
    if type(rows) ~= "table" or #rows == 0 then
      notify("no runs in this repository yet", vim.log.levels.WARN)
      return
    end
    render(rows[1].id)
  end)
end

--- For a statusline: `promptrail: 1a2b3c4d running` while a run is going, else "".
function M.statusline()
  for index = #M.state.order, 1, -1 do
    local run = M.state.runs[M.state.order[index]]
    if not run.final then
      return string.format("promptrail: %s %s", run.id:sub(1, 8), run.status or "starting")
    end
  end
  return ""
end

local function define_commands()
  local function command(name, callback, opts)
    pcall(api.nvim_del_user_command, name)
    api.nvim_create_user_command(name, callback, opts)
  end
  command("PromptrailRun", function(args)
    if args.args ~= "" then
      M.run({ prompt = args.args })
      return
    end
    vim.ui.input({ prompt = "promptrail prompt: " }, function(prompt)
      if prompt and vim.trim(prompt) ~= "" then
        M.run({ prompt = prompt })
      end
    end)
  end, { nargs = "*", desc = "promptrail: run a prompt with the agent" })
  command("PromptrailCancel", function(args)
    M.cancel(args.args)
  end, { nargs = "?", desc = "promptrail: cancel the running run (or the one named)" })
  command("PromptrailShow", function(args)
    M.show(args.args)
  end, { nargs = "?", desc = "promptrail: show a run (the lens under the cursor, or the last one)" })
  command("PromptrailLog", function()
    M.open_log(true)
  end, { nargs = 0, desc = "promptrail: open the live log" })
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  if opts and opts.cmd then -- a list is replaced, not merged item by item
    M.config.cmd = opts.cmd
  end
  if opts and opts.filetypes then
    M.config.filetypes = opts.filetypes
  end
  notified_missing = false
  define_commands()
  api.nvim_clear_autocmds({ group = group })
  api.nvim_create_autocmd({ "BufReadPost", "BufNewFile", "FileType" }, {
    group = group,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  for _, bufnr in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(bufnr) then
      M.attach(bufnr)
    end
  end
end

M._compat = compat

return M
