<?php
// The first part must reach the client before the script ends: it then
// waits for the file the test creates once it has read that part.
while (ob_get_level() > 0) ob_end_flush();
header("X-Stream: yes");
echo "first\n";
flush();
$mark = $_GET["mark"];
for ($i = 0; $i < 600 && !file_exists($mark); $i++) usleep(50000);
echo file_exists($mark) ? "second\n" : "timeout\n";
