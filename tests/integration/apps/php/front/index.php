<?php
echo json_encode(["front" => true, "uri" => $_SERVER["REQUEST_URI"],
                  "script_name" => $_SERVER["SCRIPT_NAME"],
                  "script_filename" => $_SERVER["SCRIPT_FILENAME"],
                  "cwd" => getcwd()]);
