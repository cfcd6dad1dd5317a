<?php
$s = function_exists("opcache_get_status") ? opcache_get_status(false) : false;
header("Content-Type: application/json");
echo json_encode(["enabled" => $s ? $s["opcache_enabled"] : false,
                  "hits" => $s ? $s["opcache_statistics"]["hits"] : 0,
                  "pid" => getmypid()]);
