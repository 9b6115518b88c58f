// CSV export of the rows on screen, safe to open in a spreadsheet.

const COLUMNS = ["ID", "Function", "Status", "Duration (ms)", "Retries", "Created", "Error"];

/**
 * One CSV cell: newlines flattened, quotes doubled, and anything a spreadsheet
 * would read as a formula (= + - @, tab, carriage return) prefixed with '.
 */
export function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  text = text.replace(/\r\n|\r|\n/g, " ");
  return `"${text.replace(/"/g, '""')}"`;
}

export function tasksCsv(tasks) {
  const lines = [COLUMNS.map(csvCell).join(",")];
  for (const task of tasks) {
    const duration = task.duration === null || task.duration === undefined ? "" : Math.round(task.duration * 1000);
    lines.push(
      [task.task_id, task.func_name, task.status, duration, task.retries_used, task.created_at, task.error || ""]
        .map(csvCell)
        .join(","),
    );
  }
  return `${lines.join("\r\n")}\r\n`;
}

export function download(filename, text) {
  const blob = new Blob([text], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function csvFilename(now = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  return `tasks-${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}.csv`;
}
