# cmake -DBIN2C=... -DINPUT=... -DOUTPUT=... -DNAME=... -P Bin2cHeader.cmake: bin2c's C array of INPUT
# written to OUTPUT (bin2c prints to stdout; execute_process redirects without a shell), or an error.
execute_process(COMMAND "${BIN2C}" --const --name "${NAME}" --type longlong "${INPUT}"
                OUTPUT_FILE "${OUTPUT}.tmp" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE "${OUTPUT}.tmp")
  message(FATAL_ERROR "bin2c ${INPUT}: exit ${rc}")
endif()
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
